"""Lint and types are part of the suite: ruff on everything, mypy over the whole tree (``files`` in pyproject)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    # The ruff of the running interpreter's environment (a test dependency), not whatever is on PATH.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "No module named ruff" not in result.stderr, "ruff is a test dependency (pip install -e '.[test]')"
    assert result.returncode == 0, result.stdout + result.stderr


def _package_tree(dest: Path) -> Path:
    """Symlinks laying the checkout out as the installed package (``pipelines/`` as ``vidfix/pipelines`` ...),
    so mypy resolves ``vidfix.pipelines.x`` to the real file (it cannot follow the editable install's finder)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    files: list[str] = config["tool"]["mypy"]["files"]
    top = dest / "vidfix"
    top.mkdir(parents=True)
    for entry in (ROOT / package_dir["vidfix"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        if package != "vidfix":
            assert folder in files, f"{folder}/ ({package}) is not in [tool.mypy] files"
            (top / package.split(".", 1)[1]).symlink_to(ROOT / folder)
    return top


@pytest.mark.slow
def test_mypy_clean_on_the_whole_tree(tmp_path: Path):
    top = _package_tree(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), str(top)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.search(r"Success: no issues found in (\d+) source files", result.stdout)
    sources = sum(
        1 for folder in ("vidfix", "pipelines", "metrics", "scripts", "bench") for _ in (ROOT / folder).rglob("*.py")
    )
    assert checked and int(checked.group(1)) >= sources, (
        result.stdout,
        sources,
    )  # the whole tree, not a part
