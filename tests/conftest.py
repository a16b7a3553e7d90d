"""The suite's fixtures; the helpers they use live in helpers.py (tests import those from there)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import DaemonProcess, Pki, RunningDaemon, make_pki, running_daemon, spawn_daemon, train_small_store


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained store, shared by the session: copy it (the `store` fixture), never modify it."""
    return train_small_store(tmp_path_factory.mktemp("trained") / "store")


@pytest.fixture
def store(trained_store: Path, tmp_path: Path) -> Path:
    """A private copy of the trained store for one test (it may forget, write a ledger, be corrupted)."""
    dest = tmp_path / "store"
    shutil.copytree(trained_store, dest)
    return dest


@pytest.fixture
def daemon(store: Path) -> Iterator[RunningDaemon]:
    """A daemon serving a fresh copy of the small store, no auth, no TLS."""
    with running_daemon(store) as running:
        yield running


@pytest.fixture
def daemon_process() -> Iterator[Callable[..., DaemonProcess]]:
    """A factory for subprocess daemons; any still running at the end of the test is killed."""
    started: list[DaemonProcess] = []

    def start(store: Path | None, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        running = spawn_daemon(store, *args, env=env)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGKILL)
            running.proc.wait()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for localhost, a client certificate from the CA and a rogue one."""
    return make_pki(tmp_path_factory.mktemp("pki"))
