"""Shards on executors (server/executors): inline, a process pool and Ray give bitwise the same digests for the
same training and forgets; a worker killed mid-forget makes the forget complete through a retry (the store then
verifies from genesis) or, past the retries, fail with nothing published or left behind; a missing Ray is a
clear usage error naming the extra to install.

One local Ray (2 CPUs, loopback only) serves the module's Ray tests; they skip where Ray is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import running_daemon

from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.server.config import EngineConfig
from forgetd.server.data import load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import ExecutorError, InvalidConfig
from forgetd.server.executors import ExecutorSpec, make_executor
from forgetd.server.executors.local import ProcessExecutor

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="the ray package is not installed (pip install 'forgetd[ray]')")

# 100 rows a shard in 4 slices of 25: the last slice is the retrain region (m = 1), so every strategy has work.
CONFIG = dict(shards=4, slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(16, 16), batch_size=32, seed=0,
              device="cpu")
ROWS = 400
FORGETS = ("sisa", "dpus", "hs", "ohs", "influence", "retrain")
KILLED = 3  # ids the kill tests forget with RETRAIN, which retrains every shard from step 1


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module's Ray tests: 2 CPUs, loopback only, no dashboard; stopped at the end."""
    assert ray is not None
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield
    finally:
        ray.shutdown()


def run_sequence(root: Path, kind: str) -> list[Any]:
    """Train, then forget 5 ids with each strategy of FORGETS: every digest and shard digest on the way."""
    data = load_dataset("synthetic", n=ROWS, seed=0)
    with Engine.train(data, EngineConfig(**CONFIG), root, executor=ExecutorSpec(kind, workers=2)) as engine:
        seen: list[Any] = [engine.digest(), engine.shard_digests()]
        ids = engine.sample_ids()
        for i, strategy in enumerate(FORGETS):
            report = engine.forget(ids[i * 5:(i + 1) * 5], strategy)
            seen += [strategy, report.digest, list(report.shard_digests)]
    return [*genesis_without_refs(root).values(), *seen]


def genesis_without_refs(root: Path) -> dict[str, Any]:
    """genesis.json but for refs.npy's digest, which differs with each store's own random subject key."""
    genesis: dict[str, Any] = json.loads((root / "genesis.json").read_text())
    del genesis["artifacts"]["refs"]
    return genesis


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return run_sequence(tmp_path_factory.mktemp("inline") / "store", "inline")


def test_a_process_pool_gives_the_inline_digests(inline_run: list[Any], tmp_path: Path) -> None:
    assert run_sequence(tmp_path / "store", "process") == inline_run


@needs_ray
def test_ray_gives_the_inline_digests(local_ray: None, inline_run: list[Any], tmp_path: Path) -> None:
    assert run_sequence(tmp_path / "store", "ray") == inline_run


# ------------------------------------------------------------------------------------------------ killed workers


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kill tests' store, trained inline once: copy it (`store`), never modify it."""
    path = tmp_path_factory.mktemp("trained") / "store"
    Engine.train(load_dataset("synthetic", n=ROWS, seed=0), EngineConfig(**CONFIG), path).close()
    return path


@pytest.fixture
def store(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "store"))


@pytest.fixture(scope="module")
def retrained(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    """The ids the kill tests forget, and the digest an inline RETRAIN of them publishes."""
    with Engine.open(shutil.copytree(trained, tmp_path_factory.mktemp("reference") / "store"), device="cpu") as e:
        ids = e.sample_ids()[:KILLED]
        return ids, e.forget(ids, "retrain").digest


def kill_when(victims: Callable[[], list[int]], ready: Callable[[], bool], done: threading.Event) -> int | None:
    """SIGKILL the first of `victims()` once there is one and `ready()` holds; its pid, or None when the forget
    (`done`) ended first."""
    while not done.is_set():
        pids = victims()
        if pids and ready():
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        done.wait(0.005)
    return None


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, threading.Event, dict[str, Any]]:
    """`call` in a thread: the thread, an event set when it returned or raised, and its result or error."""
    done, out = threading.Event(), {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as exc:
            out["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, out


def test_a_process_worker_killed_as_the_forget_dispatches_is_retried_and_the_store_verifies(
        store: Path, retrained: tuple[list[str], str]) -> None:
    ids, digest = retrained
    with running_daemon(store, executor="process", executor_workers=1) as running, Client(running.address) as client:
        engine = running.runtime.engine
        executor = engine._executor
        assert isinstance(executor, ProcessExecutor)
        assert executor.worker_pids() == []  # the pool starts with the forget's map: a pid means it dispatched
        thread, done, out = in_background(lambda: client.forget(ids, strategy="retrain", timeout=300))
        killed = kill_when(executor.worker_pids, lambda: True, done)
        thread.join()
        assert killed is not None, "the forget ended before its worker could be killed"
        assert "error" not in out, out
        assert executor.restarts >= 1 and killed not in executor.worker_pids()
        assert engine.version == 1 and engine.digest() == digest
    report = audit(store, device="cpu")
    assert report.ok, report.text()


def test_a_worker_killed_past_the_retries_publishes_nothing_and_leaves_no_file(
        store: Path, retrained: tuple[list[str], str]) -> None:
    ids, digest = retrained
    # One worker runs the 4 shard tasks one after another: once the first has written an increments file,
    # three tasks' work is left to kill it in, and the partial file shows the cleanup is real.
    executor = ProcessExecutor(ExecutorSpec("process", workers=1, retries=0))
    with Engine.open(store, device="cpu", executor=executor) as engine:
        before = engine.digest()
        thread, done, out = in_background(lambda: engine.forget(ids, "retrain"))
        killed = kill_when(executor.worker_pids, lambda: any((store / "artifacts").glob("*.inc.v1.npy")), done)
        thread.join()
        assert killed is not None, "the forget ended before its worker could be killed"
        assert isinstance(out.get("error"), ExecutorError) and "nothing was published" in str(out["error"])
        assert engine.version == 0 and engine.digest() == before
        assert not list((store / "artifacts").glob("*.v1.npy"))
    with Engine.open(store, device="cpu") as again:  # what is on disk is the whole old version: it forgets as new
        assert again.version == 0 and again.forget(ids, "retrain").digest == digest


def ray_workers_running(task: str) -> list[int]:
    """The pids of this machine's Ray workers executing `task` now (Ray titles a busy worker `ray::<task>`)."""
    title = f"ray::{task}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(title):
                pids.append(int(entry.name))
        except OSError:  # ended while we looked
            continue
    return sorted(pids)


@needs_ray
def test_a_ray_worker_killed_mid_task_is_retried_by_ray(local_ray: None, store: Path,
                                                         retrained: tuple[list[str], str]) -> None:
    ids, digest = retrained
    with Engine.open(store, device="cpu", executor=ExecutorSpec("ray", workers=2)) as engine:
        thread, done, out = in_background(lambda: engine.forget(ids, "retrain"))
        killed = kill_when(lambda: ray_workers_running("run_forget_task"), lambda: True, done)
        thread.join()
        assert killed is not None, "the forget ended before a Ray worker could be killed"
        assert "error" not in out, out
        assert out["result"].digest == digest and engine.version == 1


# ------------------------------------------------------------------------------------------------ settings


def test_a_missing_ray_is_a_usage_error_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from forgetd.client.cli.main import main\n"
            f"main(['train', '--data', 'synthetic', '--rows', '200', '--store', {str(tmp_path / 's')!r}, "
            "'--executor', 'ray'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'forgetd[ray]'" in done.stderr
    assert not (tmp_path / "s").exists()


def test_bad_executor_settings_say_how_to_fix_them() -> None:
    with pytest.raises(InvalidConfig, match="choose one of inline, process, ray"):
        ExecutorSpec("threads")
    with pytest.raises(InvalidConfig, match="add --executor ray"):
        ExecutorSpec("process", ray_address="auto")
    with pytest.raises(InvalidConfig, match="give 1 or more"):
        ExecutorSpec("process", workers=0)
    with pytest.raises(InvalidConfig, match="give 0 or more"):
        ExecutorSpec("process", retries=-1)
    assert not make_executor(None).remote
