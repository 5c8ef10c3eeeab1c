"""Source checks run as tests (style.md practice 14): ruff on everything, mypy on gateway/."""

from __future__ import annotations

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
    """The extension is built by `make` and is the gateway's splitter (it is required)."""
    r = subprocess.run(
        [sys.executable, "-c", "import gateway.produce as p, gateway._speedups as s; "
         "assert p.JsonSplitter is s.JsonSplitter, p.JsonSplitter"],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
