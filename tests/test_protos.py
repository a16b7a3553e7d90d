"""The .proto files are the spec: the committed stubs must be what they generate, and Buf's lint must pass."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROTOS = REPO / "protos"
COMMITTED = PROTOS / "forgetd" / "v1"


def _generate_module():
    # protos/ is not a package; load generate.py by path so the test uses exactly what `make stubs` runs.
    spec = importlib.util.spec_from_file_location("forgetd_protos_generate", PROTOS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    written = _generate_module().generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(committed), "stub files differ from the .proto files: run `make stubs`"
    stale = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make stubs` and commit them with the .proto change"


def _buf() -> str:
    # The buf-bin package puts `buf` beside the interpreter; fall back to one on PATH.
    beside = Path(sys.executable).parent / "buf"
    found = str(beside) if beside.exists() else shutil.which("buf")
    if found is None:
        pytest.fail("buf not found: install the test extra (buf-bin), e.g. `make test`")
    return found


def test_buf_lint_passes() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=PROTOS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"
