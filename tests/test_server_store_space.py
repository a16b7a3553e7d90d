"""A nearly full disk: space is reserved before an increments file is mapped, so a forget on a full file system
is a clean NoSpace (never a SIGBUS), the daemon keeps running with the request pending and durable, and
applies it once there is room; `forgetd verify` says "no space left" in one line and leaves no scratch copy.

The file system is a size-limited tmpfs mounted by the test, which needs root (CI runs as root)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from forgetd.server.engine.increments import create_increments
from forgetd.server.errors import NoSpace
from forgetd.v1 import common_pb2, unlearning_service_pb2 as upb, unlearning_service_pb2_grpc

from helpers import REPO, mounted_tmpfs, train_small_store, wait_serving

FORGETD = str(Path(sys.executable).with_name("forgetd"))  # the console script, as a user runs it

FS_BYTES = 32 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs, unmounted after the test."""
    with mounted_tmpfs(tmp_path / "fs", FS_BYTES) as mount:
        yield mount


def fill(fs: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free on `fs`."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    with open(filler, "ab") as f:
        f.truncate(0)
        left = st.f_bavail * st.f_frsize - leave
        while left > 0:
            left -= f.write(bytes(min(left, 1 << 20)))
    return filler


def test_an_increments_file_that_does_not_fit_is_no_space_and_leaves_nothing(small_fs: Path) -> None:
    fill(small_fs, 64 << 10)
    path = small_fs / "big.inc.npy"
    with pytest.raises(NoSpace, match=f"no space left on the device of {small_fs}"):
        create_increments(path, 100, 1000)  # 400 kB
    assert not path.exists()
    small = create_increments(small_fs / "small.inc.npy", 2, 100)  # 800 bytes: fits, and is zeros
    assert small.shape == (2, 100) and not small.any()


class _Lines:
    """A process's stderr, line by line, read by a thread: `wait_for` blocks on the queue, never sleeps."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.seen = proc, []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait()}) before {text!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return line


def _serve(store: Path) -> tuple[subprocess.Popen[str], _Lines, str]:
    proc = subprocess.Popen([FORGETD, "serve", "--store", str(store),
                             "--listen", "127.0.0.1:0", "--log-level", "warning"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    lines = _Lines(proc)
    address = lines.wait_for("listening on").split("listening on ")[1].split(";")[0]
    with grpc.insecure_channel(address) as channel:
        wait_serving(channel)
    return proc, lines, address


@pytest.mark.slow
def test_a_forget_on_a_full_disk_stays_pending_and_is_applied_once_there_is_room(small_fs: Path) -> None:
    # 128-wide layers make increments files of a few hundred kB, more than the room left below.
    store = train_small_store(small_fs / "store", hidden_sizes=(128, 128))
    proc, lines, address = _serve(store)
    try:
        filler = fill(small_fs, 128 << 10)
        with grpc.insecure_channel(address) as channel:
            unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
            request = upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=common_pb2.STRATEGY_RETRAIN,
                                        request_id="full-disk", wait=False)
            acked = unlearning.Forget(request, timeout=30)
            assert acked.status == upb.FORGET_STATUS_PENDING  # durable in the ledger: the ack needs little room
            assert "no space left on the device of" in lines.wait_for("applying forget batch")
            assert proc.poll() is None  # no SIGBUS: the daemon is up, the request pending
            status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="full-disk"), timeout=30)
            assert status.forget.status == upb.FORGET_STATUS_PENDING
            filler.unlink()
            request.wait = True
            applied = unlearning.Forget(request, timeout=180)  # the worker's next retry finds room
            assert applied.status == upb.FORGET_STATUS_APPLIED
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0

    filler = fill(small_fs, 64 << 10)  # the replay's scratch copy and its retrain do not fit
    verify = [FORGETD, "verify", "--store", str(store)]
    done = subprocess.run(verify, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: the replay stopped: no space left on the device of "), line
    assert not [p.name for p in (store / "audit").iterdir() if p.name.startswith(".")]
    filler.unlink()
    again = subprocess.run(verify, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr


def test_training_that_does_not_fit_is_no_space_and_leaves_no_half_made_store(small_fs: Path) -> None:
    fill(small_fs, 256 << 10)
    with pytest.raises(NoSpace, match="no space left on the device of"):
        train_small_store(small_fs / "store", hidden_sizes=(128, 128))
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]
