"""Shared test helpers: a small trained store, running daemons (in-process and as a subprocess), health waits.

Every daemon listens on port 0 and is waited on through grpc.health.v1 (a Watch stream that returns as
soon as the server says SERVING), never with a sleep.
"""

from __future__ import annotations

import contextlib
import sqlite3
import datetime
import ipaddress
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
# The UCI Adult files (adult.data, adult.test) for the tests that use real data; they skip when it is absent.
# FORGETD_ADULT_DIR points elsewhere; by default the folder the test machines keep beside the checkout.
ADULT_DIR = Path(os.environ.get("FORGETD_ADULT_DIR", REPO.parent / "shared" / "datasets" / "adult"))

# Small enough to train in about a second on one core: 300 rows, 4 slices, 1 epoch, a narrow MLP. Slice
# sizes are ~75 rows, so with the default budget the last slice forms the retrain region (m = 1) and every
# strategy has work on both regions.
SMALL_ROWS = 300
SMALL_CONFIG = dict(slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(16, 16), batch_size=32, seed=0)


def train_small_store(path: Path, *, rows: int = SMALL_ROWS, **overrides: Any) -> Path:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    config = EngineConfig(**{**SMALL_CONFIG, "device": "cpu", **overrides})
    Engine.train(load_dataset("synthetic", n=rows, seed=0), config, path).close()
    return path


# ------------------------------------------------------------------------------------------------ threads and locks


@contextlib.contextmanager
def write_lock_held(path: Path, *statements: str) -> Iterator[sqlite3.Connection]:
    """Holds `path`'s SQLite write lock (running `statements` inside it) until the block ends, then commits."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements:
            conn.execute(sql)
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def in_threads(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], list[Any]]:
    """Starts each call in its own thread; the list fills with each one's result or exception, by index."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return threads, results


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `folder` (made here) for the block, unmounted after; the test skips
    where mounting needs root or the kernel refuses (the reason is quoted)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def drop_config_field(store: Path, name: str) -> None:
    """Remove `name` from the store's recorded configuration (store.json): a store trained before the field."""
    import json

    from forgetd.server.store.layout import StorePaths

    meta_path = StorePaths(store).meta
    meta = json.loads(meta_path.read_text())
    del meta["config"][name]
    meta_path.write_text(json.dumps(meta))


def start_and_stop(store: Path) -> None:
    """Start a daemon on `store` (recovery and every start-up check run) and stop it at once; what start-up
    refuses is raised."""
    from forgetd.server import ServerConfig, create_server

    daemon, _ = create_server(ServerConfig(store=store, listen="127.0.0.1:0"))
    try:
        daemon.start()
    finally:
        daemon.stop(grace=0)


# ------------------------------------------------------------------------------------------------ health


def wait_serving(channel: grpc.Channel, timeout: float = 60.0) -> None:
    """Blocks until the server's overall health is SERVING (a Watch stream: no polling, no sleeps)."""
    stub = health_pb2_grpc.HealthStub(channel)
    stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True)
    try:
        for update in stream:
            if update.status == health_pb2.HealthCheckResponse.SERVING:
                return
    finally:
        stream.cancel()
    raise AssertionError("the health stream ended before the server said SERVING")


# ------------------------------------------------------------------------------------------------ in-process


@dataclass
class RunningDaemon:
    daemon: Any  # forgetd.server.daemon.server.Daemon
    address: str
    store: Path
    channel: grpc.Channel

    @property
    def runtime(self) -> Any:
        return self.daemon.runtime

    def stubs(self) -> tuple[Any, Any]:
        from forgetd.v1 import inference_service_pb2_grpc, unlearning_service_pb2_grpc

        return (inference_service_pb2_grpc.InferenceServiceStub(self.channel),
                unlearning_service_pb2_grpc.UnlearningServiceStub(self.channel))


@contextlib.contextmanager
def running_daemon(store: Path, *, channel_credentials: grpc.ChannelCredentials | None = None,
                   channel_options: list[tuple[str, Any]] | None = None, **config: Any) -> Iterator[RunningDaemon]:
    """An in-process daemon on port 0 serving `store`, stopped (with grace) on exit."""
    from forgetd.server import ServerConfig, create_server

    daemon, port = create_server(ServerConfig(store=store, listen="127.0.0.1:0", **config))
    daemon.start()  # returns once loaded; health is checked below the way a client would
    target = f"localhost:{port}" if channel_credentials is not None else f"127.0.0.1:{port}"
    channel = (grpc.secure_channel(target, channel_credentials, options=channel_options or [])
               if channel_credentials is not None else grpc.insecure_channel(target, options=channel_options or []))
    try:
        wait_serving(channel)
        yield RunningDaemon(daemon, f"127.0.0.1:{port}", store, channel)
    finally:
        channel.close()
        daemon.stop(grace=5.0)


# ------------------------------------------------------------------------------------------------ subprocess


_LISTENING = re.compile(r"listening on (\S+:\d+)")


@dataclass
class DaemonProcess:
    """`forgetd serve` in a subprocess. Its stderr is collected (and searched for the bound address)."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    address: str = ""
    _bound: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = _LISTENING.search(line)
            if m and not self._bound.is_set():
                self.address = m.group(1)
                self._bound.set()
        self._bound.set()  # exited: wake the waiter, which then sees no address

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_serving(self, timeout: float = 120.0) -> str:
        if not self._bound.wait(timeout) or not self.address:
            raise AssertionError(f"forgetd serve did not bind (exit {self.proc.poll()}):\n{self.log}")
        with grpc.insecure_channel(self.address) as channel:
            wait_serving(channel, timeout)
        return self.address

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def wait(self, timeout: float = 120.0) -> int:
        return self.proc.wait(timeout)


def spawn_daemon(store: Path | None, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
    """Starts `forgetd serve --store STORE --listen 127.0.0.1:0 ARGS...`; call .wait_serving() next."""
    cmd = [sys.executable, "-m", "forgetd.client.cli.main", "serve", "--listen", "127.0.0.1:0", *args]
    if store is not None:
        cmd += ["--store", str(store)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, cwd=REPO)
    running = DaemonProcess(proc)
    threading.Thread(target=running._pump, name="daemon-stderr", daemon=True).start()
    return running


# ------------------------------------------------------------------------------------------------ TLS


@dataclass
class Pki:
    ca: bytes
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: bytes
    client_key: bytes
    rogue_cert: bytes  # a client certificate signed by a CA the server does not trust
    rogue_key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, usage=None, sans=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    return _cert(name, key, name, key, ca=True), key


def make_pki(d: Path) -> Pki:
    """Writes server.pem, server.key and ca.pem into d and returns every PEM the TLS tests need."""
    ca, ca_key = _ca("forgetd test CA")
    rogue_ca, rogue_ca_key = _ca("someone else's CA")
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    server_key = _key()
    server = _cert("localhost", server_key, "forgetd test CA", ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key, rogue_key = _key(), _key()
    client = _cert("auditor", client_key, "forgetd test CA", ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue = _cert("intruder", rogue_key, "someone else's CA", rogue_ca_key, ca=False,
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    (d / "server.pem").write_bytes(pem(server))
    (d / "server.key").write_bytes(_pem_key(server_key))
    (d / "ca.pem").write_bytes(pem(ca))
    return Pki(pem(ca), d / "server.pem", d / "server.key", d / "ca.pem", pem(client), _pem_key(client_key),
               pem(rogue), _pem_key(rogue_key))


# ------------------------------------------------------------------------------------------------ token
