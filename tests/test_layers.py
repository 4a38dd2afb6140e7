"""The layering of prep/ (pyproject.toml's [tool.importlinter] contracts, explained in ARCHITECTURE.md) holds:
no package imports a layer above it, byte formats stand alone, the stages do not import one another."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "lint-imports (import-linter, a dev dependency) is not installed: make install-dev"
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "3 kept" in proc.stdout, proc.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The check can fail: a copy of prep in which a byte format imports a stage breaks the contracts."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "prep", copy / "prep", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    tar = copy / "prep" / "formats" / "tar.py"
    tar.write_text(tar.read_text() + "\nfrom prep.writers import base  # noqa\n")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    proc = subprocess.run([lint, "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "prep.formats is not allowed to import prep.writers" in proc.stdout
