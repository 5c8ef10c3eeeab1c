"""The import graph of gateway/ (read with ``ast``, every import: module level, inside functions,
under TYPE_CHECKING): no cycle, and no import that runs up the layers.

    process   app, server, cli, workers, options, config_sources  (process, listener, wiring)
    api       gateway.api.*                               (endpoints, dispatch, auth and ACL)
    produce, consume, kafka, http, auth                    (each knows only what is below it)
    base      errors, config, log, stats, limits, futures (plain values, no I/O of the gateway's)

    loadgen   gateway.loadgen.*: the load generator, a client of the HTTP API; it uses nothing of
              the server (base at most), and only the command line (process) starts it

A module that is in no layer fails the test: a new module must be placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# Layer of each module: by exact name, else by package prefix.
BASE = {"gateway", "gateway.errors", "gateway.config", "gateway.log", "gateway.stats", "gateway.limits",
        "gateway.moves", "gateway.futures"}
PROCESS = {"gateway.__main__", "gateway.cli", "gateway.app", "gateway.server", "gateway.workers",
           "gateway.options", "gateway.config_sources"}
PACKAGES = ("api", "http", "kafka", "produce", "consume", "auth", "loadgen")

# Which layers each layer may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "http": {"base", "http"},
    "kafka": {"base", "kafka"},
    "produce": {"base", "kafka", "produce"},
    "consume": {"base", "kafka", "consume"},
    "auth": {"base", "auth", "http"},  # (http: the request head's type)
    "api": {"base", "http", "kafka", "produce", "consume", "auth", "api"},
    "process": {"base", "http", "kafka", "produce", "consume", "auth", "api", "process", "loadgen"},
    "loadgen": {"base", "loadgen"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in GATEWAY.rglob("*.py"):
        parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer(name: str) -> str | None:
    if name in BASE:
        return "base"
    if name in PROCESS:
        return "process"
    for pkg in PACKAGES:
        if name == f"gateway.{pkg}" or name.startswith(f"gateway.{pkg}."):
            return pkg
    return None


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gateway modules ``name`` imports (a name imported from a module counts as the
    module; ``from pkg import mod`` counts as pkg and pkg.mod)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in modules() if layer(name) is None)
    assert not unplaced, f"modules in no layer (place them in tests/unit/test_layers.py): {unplaced}"


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles in gateway/: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for name, deps in sorted(graph().items()):
        own = layer(name)
        assert own is not None
        for dep in sorted(deps):
            theirs = layer(dep)
            if theirs not in ALLOWED[own]:
                wrong.append(f"{name} ({own}) imports {dep} ({theirs})")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_the_checker_sees_what_it_must() -> None:
    """The checks above would notice a cycle, a function-level import and an upward import."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert layer("gateway.http.protocol") == "http" and layer("gateway.api.dispatch") == "api"
    assert "api" not in ALLOWED["http"] and "http" not in ALLOWED["produce"]
    known = modules()
    # gateway.app imports gateway.kafka.embedded inside a function: it is seen.
    assert "gateway.kafka.embedded" in imports("gateway.app", known["gateway.app"], known)
