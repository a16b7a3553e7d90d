"""mypy over the whole product, as the packages import (forgetd.server, forgetd.client, forgetd.ledger).

The import names map onto the fixed top-level folders through setuptools' package-dir, which mypy cannot
follow through an editable install (every forgetd import would silently become Any). So the test lays the
real package tree out of symlinks in a temporary folder and checks that, with the project's [tool.mypy].
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREE = {"server": "server", "client": "client", "ledger": "ledger", "v1": "protos/forgetd/v1",
        "oip": "protos/inference"}


def package_tree(root: Path) -> Path:
    """root/forgetd/<name> -> the repository folder setuptools maps it from."""
    top = root / "forgetd"
    top.mkdir(parents=True)
    (top / "__init__.py").write_text("")
    for name, folder in TREE.items():
        (top / name).symlink_to(REPO / folder, target_is_directory=True)
    return root


@pytest.mark.slow
def test_mypy_is_clean_on_server_client_and_ledger(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    root = package_tree(tmp_path / "tree")
    env = {**os.environ, "MYPYPATH": str(root)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
           "--cache-dir", str(tmp_path / "cache"), "-p", "forgetd.server", "-p", "forgetd.client",
           "-p", "forgetd.ledger"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tree_resolves_forgetd_imports_to_the_repository(tmp_path: Path) -> None:
    # Without this, a broken tree would make mypy check nothing and still pass.
    root = package_tree(tmp_path / "tree")
    assert (root / "forgetd" / "server" / "engine" / "engine.py").resolve() == REPO / "server/engine/engine.py"
    assert (root / "forgetd" / "v1" / "common_pb2.pyi").exists()
