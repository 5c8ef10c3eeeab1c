"""gateway/http knows HTTP only (style.md "Layout"): it imports nothing above it, not even for
typing. The connection calls a handler interface (gateway.http.handler) that the layer above
implements."""

from __future__ import annotations

import ast
from pathlib import Path

HTTP = Path(__file__).resolve().parents[2] / "gateway" / "http"
ALLOWED = ("gateway.errors", "gateway.stats", "gateway.log", "gateway.http")


def gateway_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "gateway":  # from gateway import errors
                found.update(f"gateway.{a.name}" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("relative import")  # (the package uses absolute imports only)
    return {m for m in found if m.startswith("gateway") or m == "relative import"}


def test_http_imports_nothing_above_it() -> None:
    modules = sorted(HTTP.glob("*.py"))
    assert {p.stem for p in modules} >= {"protocol", "handler", "readbuf", "reqlog", "states", "parser"}
    bad = {
        f"{p.name}: {m}"
        for p in modules
        for m in gateway_imports(p)
        if not any(m == a or m.startswith(a + ".") for a in ALLOWED)
    }
    assert not bad, sorted(bad)
