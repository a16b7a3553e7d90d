"""The reliability bench's view of forgetd: the `forgetd` command as a user runs it, in subprocesses.

The bench kills daemons with SIGKILL and runs the auditor on tampered copies, so it drives the real commands
rather than objects in its own process: what it measures is what an operator gets. (The server package never
imports the client's; running the `forgetd` command is how it reaches the auditor.)
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["DaemonProcess", "forgetd", "run_forgetd", "wait_serving"]


def forgetd() -> list[str]:
    """The command line that runs `forgetd`: the console script beside this Python when it is installed."""
    script = Path(sys.executable).with_name("forgetd")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "forgetd.client.cli.main"]


def run_forgetd(args: Sequence[str], timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*forgetd(), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def wait_serving(channel: grpc.Channel, timeout: float) -> bool:
    """Block until the server's overall health is SERVING (a Watch stream: no polling); False when the stream
    ended first."""
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout,
                                                       wait_for_ready=True)
    try:
        for update in stream:
            if update.status == health_pb2.HealthCheckResponse.SERVING:
                return True
    finally:
        stream.cancel()
    return False


class DaemonProcess:
    """`forgetd serve --store STORE --listen 127.0.0.1:0` in a subprocess; `start` returns once it is SERVING."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name="forgetd-serve-stderr", daemon=True).start()
        self.address = self._wait_for("listening on ").split("listening on ", 1)[1].split(";")[0].strip()

    @classmethod
    def spawn(cls, store: Path, *args: str) -> DaemonProcess:
        """The daemon started and bound (its address known), not yet SERVING: `start` waits for that too."""
        proc = subprocess.Popen([*forgetd(), "serve", "--store", str(store), "--listen", "127.0.0.1:0",
                                 "--log-level", "warning", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return cls(proc)

    @classmethod
    def start(cls, store: Path, *args: str, timeout: float = 300.0) -> DaemonProcess:
        daemon = cls.spawn(store, *args)
        with grpc.insecure_channel(daemon.address) as channel:
            if not wait_serving(channel, timeout):
                raise RuntimeError(f"forgetd serve never said SERVING:\n{daemon.log}")
        return daemon

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def _wait_for(self, text: str, timeout: float = 300.0) -> str:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise RuntimeError(f"forgetd serve exited ({self.proc.wait()}):\n{self.log}")
            if text in line:
                return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then the exit code (0 when it drained and stopped as documented)."""
        self.proc.terminate()
        return self.proc.wait(timeout)
