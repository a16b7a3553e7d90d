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

from forgetd.server.api.v1 import InferenceServicer, UnlearningServicer
from forgetd.server.config import ServerConfig
from forgetd.server.errors import InvalidConfig, NotServing
from forgetd.server.runtime.slot import RuntimeSlot

log = logging.getLogger("forgetd.server")

# Methods that change what the model knows; every other method reads, and stays open to auditors.
PROTECTED_METHODS = frozenset({"/forgetd.v1.UnlearningService/Forget"})
SERVICE_NAMES = (
    inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
    unlearning_service_pb2.DESCRIPTOR.services_by_name["UnlearningService"].full_name,
)


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """The TLS credentials of the listening port; InvalidConfig names a file that cannot be read."""
    assert config.tls_cert is not None and config.tls_key is not None
    cert, key = _read(config.tls_cert, "--tls-cert"), _read(config.tls_key, "--tls-key")
    ca = _read(config.tls_client_ca, "--tls-client-ca") if config.tls_client_ca is not None else None
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


class Daemon:
    """One store served over gRPC. Use `create_server`; `with` starts it and stops it with grace."""

    def __init__(self, config: ServerConfig, *, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> None:

        self.config = config
        self._slot = RuntimeSlot()
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
                self.port = self._server.add_secure_port(config.listen, server_credentials(config))
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
        """The loaded runtime (forgetd.server.runtime.runtime.Runtime); NotServing before start() finished."""
        return self._slot.get()

    def start(self) -> None:
        """Serves health (NOT_SERVING) at once, then loads the store, recovers the ledger, and goes SERVING."""
        from forgetd.server.runtime.predictor import serving_threads  # torch: only once a store is actually served
        from forgetd.server.runtime.runtime import Runtime

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
