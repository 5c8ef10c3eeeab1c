"""Source checks run as tests: ruff on everything, mypy on gateway/, what
git tracks, and the imports of the modules every layer uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff() -> None:
    r = subprocess.run([str(BIN / "ruff"), "check", "gateway", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    r = subprocess.run([str(BIN / "mypy"), "gateway"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compiled_splitter_is_the_default() -> None:
    """The extension is required (setup.py; `make` builds it): its splitter is the one used."""
    r = subprocess.run(
        [sys.executable, "-c", "import gateway.produce as p, gateway._speedups as s; "
         "assert p.JsonSplitter is s.JsonSplitter, p.JsonSplitter"],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr


def git_files(*args: str) -> list[str]:
    r = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [f for f in r.stdout.split("\0") if f]


# What a build or make leaves in the tree: compiled and generated files, stamps, caches.
BUILD_OUTPUT_SUFFIXES = (".so", ".o", ".a", ".c", ".cpp", ".html", ".pyc", ".stamp", ".whl")
# (.venv may be a symlink to a shared virtualenv: a file to git, not a directory.)
BUILD_OUTPUT_NAMES = frozenset({".debian-deps", ".deps-installed", ".venv"})
BUILD_OUTPUT_DIRS = ("build/", "dist/", ".venv/", "__pycache__/", ".hypothesis/", "bench/out/")


def test_no_build_output_or_make_stamp_is_tracked() -> None:
    """A tracked stamp would tell make on a fresh clone that a step has run; generated C and
    compiled objects come from the build, never from the repository."""
    files = git_files()
    assert "Makefile" in files and "setup.py" in files  # the listing is this repository's
    # Nothing tracked that .gitignore says is not source.
    assert git_files("--cached", "--ignored", "--exclude-standard") == []
    built = [
        f for f in files
        if f.endswith(BUILD_OUTPUT_SUFFIXES)
        or Path(f).name in BUILD_OUTPUT_NAMES
        or any(f.startswith(d) or f"/{d}" in f for d in BUILD_OUTPUT_DIRS)
        or ".egg-info/" in f
    ]
    assert built == []


def gateway_imports(path: Path) -> set[str]:
    """The gateway modules a source file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "gateway" or n.startswith("gateway."))
    return found


def test_config_imports_nothing_of_the_gateway() -> None:
    """gateway.config is below every layer: importing it never pulls in another module (and
    no module can form an import cycle through it)."""
    assert gateway_imports(ROOT / "gateway" / "config.py") == set()
    assert gateway_imports(ROOT / "gateway" / "errors.py") == set()
