"""The daemon's lifecycle: configuration, the gRPC server, health, reflection, auth and TLS.

    server, port = create_server(ServerConfig(store=path, listen="127.0.0.1:0"))
    with server:                 # start(): bind, NOT_SERVING, load the store, recover, SERVING
        ...                      # stop(grace): NOT_SERVING, refuse new calls, finish the batch in progress

Health answers from the moment the port is bound; it says NOT_SERVING until the model is loaded and the ledger
folded, and again from the first moment of shutdown, so a load balancer never routes to a half-ready daemon.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc, unlearning_service_pb2, unlearning_service_pb2_grpc

from .errors import InvalidConfig, NotServing

log = logging.getLogger("forgetd.server")

MIB = 1024 * 1024
DEFAULT_LISTEN = "127.0.0.1:50051"
# Methods that change what the model knows; every other method reads, and stays open to auditors.
PROTECTED_METHODS = frozenset({"/forgetd.v1.UnlearningService/Forget"})
SERVICE_NAMES = (
    inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
    unlearning_service_pb2.DESCRIPTOR.services_by_name["UnlearningService"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    store: Path  # a trained store (`forgetd train`); the ledger and the head key live inside it
    listen: str = DEFAULT_LISTEN  # HOST:PORT; port 0 picks a free port (create_server returns it)
    device: str = "auto"  # auto = cuda when present; the live parameters stay on this device
    token: str | None = None  # bearer token required for Forget; None = no auth (local use only)
    tls_cert: Path | None = None  # PEM server certificate chain; with tls_key, the port speaks TLS only
    tls_key: Path | None = None  # PEM private key of tls_cert
    tls_client_ca: Path | None = None  # PEM CA bundle; set = mTLS, clients must present a certificate it signed
    max_forget_ids: int = 10_000  # sample ids one Forget may name
    max_predict_rows: int = 65_536  # rows one Predict may carry
    max_message_bytes: int = 64 * MIB  # gRPC message limit both ways (gRPC's default is 4 MiB)
    max_batch_requests: int = 256  # Forget requests the worker coalesces into one engine call
    grace_seconds: float = 30.0  # on shutdown, how long calls in flight (a waited Forget) may take to finish
    threads: int = 16  # gRPC handler threads; a waited Forget holds one until applied

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise InvalidConfig(f"listen address {self.listen!r} is not HOST:PORT; use e.g. 127.0.0.1:50051 "
                                "(port 0 picks a free one)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InvalidConfig(f"device is {self.device!r}; choose auto, cpu, cuda or cuda:N")
        if self.token is not None and (not self.token or not self.token.isprintable()
                                       or any(c.isspace() for c in self.token)):
            raise InvalidConfig("the token is empty or has whitespace or control characters; put one printable "
                                "word in the token file")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidConfig("TLS needs both --tls-cert and --tls-key; give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidConfig("--tls-client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
        for name in ("max_forget_ids", "max_predict_rows", "max_batch_requests", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidConfig(f"{name} is {value!r}; give a whole number of at least 1")
        if not isinstance(self.max_message_bytes, int) or self.max_message_bytes < 4 * MIB:
            raise InvalidConfig(f"max_message_bytes is {self.max_message_bytes!r}; give at least {4 * MIB} "
                                "(gRPC's own default, 4 MiB)")
        if not self.grace_seconds >= 0:
            raise InvalidConfig(f"grace_seconds is {self.grace_seconds!r}; give 0 or more seconds")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """The TLS credentials of the listening port; InvalidConfig names a file that cannot be read."""
        assert self.tls_cert is not None and self.tls_key is not None
        cert, key = _read(self.tls_cert, "--tls-cert"), _read(self.tls_key, "--tls-key")
        ca = _read(self.tls_client_ca, "--tls-client-ca") if self.tls_client_ca is not None else None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidConfig(f"{flag} {path}: cannot read it ({exc.strerror}); give a readable PEM file") from None


# ------------------------------------------------------------------------------------------------- auth


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Aborts calls to protected methods with UNAUTHENTICATED unless they carry `authorization: Bearer <token>`."""

    def __init__(self, token: str, protected: frozenset[str] = PROTECTED_METHODS) -> None:
        self._expected = f"Bearer {token}".encode()
        self._protected = protected

        def deny(message: str) -> grpc.RpcMethodHandler:
            def abort(request: Any, context: grpc.ServicerContext) -> None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

            return grpc.unary_unary_rpc_method_handler(abort)

        self._missing = deny("this call needs a bearer token: send metadata 'authorization: Bearer <token>'")
        self._wrong = deny("the bearer token is not valid for this server")

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method not in self._protected:
            return continuation(handler_call_details)
        given = next((v for k, v in handler_call_details.invocation_metadata if k == "authorization"), None)
        if given is None:
            return self._missing
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        # Constant time, so the token cannot be guessed byte by byte from response times.
        if not hmac.compare_digest(given_bytes, self._expected):
            return self._wrong
        return continuation(handler_call_details)


# ------------------------------------------------------------------------------------------------- the server


@dataclass
class _Slot:
    """Holds the running daemon state once loaded; servicers read it on every call."""

    runtime: Any = None  # forgetd.server.worker.Runtime once ready
    shutting_down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Any:
        runtime = self.runtime
        if runtime is None or self.shutting_down:
            raise NotServing("the server is loading its model or shutting down; retry shortly")
        return runtime


class Daemon:
    """One store served over gRPC. Use `create_server`; `with` starts it and stops it with grace."""

    def __init__(self, config: ServerConfig, *, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> None:
        from .service import InferenceServicer, UnlearningServicer  # the servicers import torch-free code only

        self.config = config
        self._slot = _Slot()
        chain = list(interceptors)
        if config.token is not None:
            chain.insert(0, BearerTokenInterceptor(config.token))
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="forgetd-rpc"),
            interceptors=chain,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),  # two daemons on one port would split the traffic silently
            ],
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(self._slot), self._server)
        unlearning_service_pb2_grpc.add_UnlearningServiceServicer_to_server(UnlearningServicer(self._slot), self._server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            if config.tls:
                self.port = self._server.add_secure_port(config.listen, config.server_credentials())
            else:
                self.port = self._server.add_insecure_port(config.listen)
        except RuntimeError as exc:  # grpc raises a bare RuntimeError when it cannot bind
            raise InvalidConfig(f"cannot listen on {config.listen} ({exc}); is another server using the port?") from None
        self.address = f"{config.listen.rpartition(':')[0]}:{self.port}"
        self._started = False
        self._stopped = threading.Event()
        self._threads = contextlib.ExitStack()  # torch's thread setting while serving, restored at stop

    def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, status)

    @property
    def runtime(self) -> Any:
        """The loaded runtime (forgetd.server.worker.Runtime); NotServing before start() finished."""
        return self._slot.get()

    def start(self) -> None:
        """Serves health (NOT_SERVING) at once, then loads the store, recovers the ledger, and goes SERVING."""
        from .predictor import serving_threads  # torch: only once a store is actually served
        from .worker import Runtime

        if self._started:
            raise RuntimeError("the daemon was already started")
        self._started = True
        self._server.start()
        try:
            self._threads.enter_context(serving_threads())
            runtime = Runtime.open(self.config)
        except BaseException:
            self._server.stop(0)
            self._threads.close()
            raise
        with self._slot.lock:
            if self._slot.shutting_down:  # stop() raced with loading: close what we opened
                runtime.close()
                return
            self._slot.runtime = runtime
        runtime.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving model version %d (%s) on %s%s", runtime.live.version, runtime.live.digest[:16],
                 self.address, " with TLS" if self.config.tls else "")

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls, finishes the forget batch in progress, lets calls in flight end, closes the ledger."""
        grace = self.config.grace_seconds if grace is None else grace
        with self._slot.lock:
            if self._slot.shutting_down:
                self._stopped.wait()
                return
            self._slot.shutting_down = True
            runtime = self._slot.runtime
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("shutting down: no new calls; finishing the forget in progress")
        done = self._server.stop(grace)  # refuses new calls now; calls in flight get `grace` seconds
        if runtime is not None:
            runtime.stop(grace)  # applies what was acknowledged, within the grace; the rest waits for a restart
        done.wait()
        if runtime is not None:
            runtime.close()
        self._threads.close()
        self._stopped.set()
        log.info("stopped")

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_server(config: ServerConfig, **kwargs: Any) -> tuple[Daemon, int]:
    """A daemon bound to config.listen (port 0 = a free port) and the port it got; `with` the daemon to run it."""
    daemon = Daemon(config, **kwargs)
    return daemon, daemon.port
