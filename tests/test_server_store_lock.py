"""One daemon per store: a second `forgetd serve` (or create_server) on a store another daemon holds refuses
to start with one line naming the holder's pid, binds nothing and writes nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main
from forgetd.server import ServerConfig, create_server
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import StoreHeld
from forgetd.server.store.lock import check_not_held

from helpers import REPO, RunningDaemon

FORGETD = str(Path(sys.executable).with_name("forgetd"))  # the console script, as a user runs it


def _files(root: Path) -> dict[str, tuple[int, str]]:
    """Every file's (mtime in ns, SHA-256): what "nothing written" compares."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def held_line(store: Path, pid: int) -> str:
    return f"Error: store {store} is held by process {pid}; stop it or choose another --store"


def test_a_second_serve_refuses_in_one_line_and_writes_nothing(daemon: RunningDaemon) -> None:
    before = _files(daemon.store)
    done = subprocess.run([FORGETD, "serve", "--store", str(daemon.store),
                           "--listen", "127.0.0.1:0"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [held_line(daemon.store, os.getpid())]  # no "listening": nothing was bound
    assert _files(daemon.store) == before


def test_create_server_on_a_held_store_refuses_before_loading(daemon: RunningDaemon) -> None:
    before = _files(daemon.store)
    second, _ = create_server(ServerConfig(store=daemon.store, listen="127.0.0.1:0"))
    with pytest.raises(StoreHeld, match=f"is held by process {os.getpid()}"):
        second.start()
    assert _files(daemon.store) == before


def test_the_serve_command_checks_before_it_prints(daemon: RunningDaemon) -> None:
    result = CliRunner().invoke(main, ["serve", "--store", str(daemon.store), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [held_line(daemon.store, os.getpid())]


def test_a_daemon_engine_requires_the_writer_lock_a_reader_does_not(store: Path) -> None:
    with Engine.open(store, device="cpu"):
        with pytest.raises(StoreHeld):
            check_not_held(store)
        with pytest.raises(StoreHeld, match=f"store {store} is held by process {os.getpid()}"):
            Engine.open(store, device="cpu", require_writer=True)
        Engine.open(store, device="cpu").close()  # reading, planning, predicting: still allowed
    check_not_held(store)  # released with the engine
    Engine.open(store, device="cpu", require_writer=True).close()


def test_the_lock_dies_with_its_holder(store: Path) -> None:
    # A holder killed outright (no close, no cleanup) leaves no lock behind: the kernel drops it.
    script = ("import os, signal; from forgetd.server.engine.engine import Engine; "
              f"Engine.open({str(store)!r}, device='cpu', require_writer=True); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120).returncode == -9
    check_not_held(store)
    Engine.open(store, device="cpu", require_writer=True).close()
