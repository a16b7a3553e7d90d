"""The daemon's lifecycle: the gRPC server, health and reflection (auth and TLS: auth.py), and the HTTP
front beside it when `http_listen` is set (server/api/http).

    server, port = create_server(ServerConfig(store=path, listen="127.0.0.1:0"))
    with server:                 # start(): bind, NOT_SERVING, load the store, recover, SERVING
        ...                      # stop(grace): NOT_SERVING, refuse new calls, finish the batch in progress

Health answers from the moment the port is bound; it says NOT_SERVING until the model is loaded and the ledger
folded, and again from the first moment of shutdown, so a load balancer never routes to a half-ready daemon.
While the daemon drains, health keeps answering (NOT_SERVING) and every other call is refused with
UNAVAILABLE; the port closes only once the drain is over. The Unlearning service alone goes NOT_SERVING
while forgetting is halted (server/runtime/worker.py), inference staying SERVING. Health also answers
List, and reflection answers under grpc.reflection.v1 and v1alpha (discovery.py); a request whose bytes
do not parse is INVALID_ARGUMENT (decoding.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc, unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.api.oip_grpc import SERVICE_NAME as OIP_SERVICE_NAME, add_oip_servicer
from forgetd.server.api.oip_model import OipModel
from forgetd.server.api.v1 import InferenceServicer, UnlearningServicer
from forgetd.server.config import ServerConfig
from forgetd.server.daemon.auth import LEDGER_READ_METHODS, PROTECTED_METHODS, BearerTokenInterceptor
from forgetd.server.daemon.auth import server_credentials
from forgetd.server.daemon.decoding import MalformedRequests
from forgetd.server.daemon.discovery import Health, enable_reflection
from forgetd.server.errors import InvalidConfig
from forgetd.server.runtime.slot import RuntimeSlot

if TYPE_CHECKING:
    from forgetd.server.api.http.server import HttpFront
    from forgetd.server.runtime.runtime import Runtime

__all__ = ["Daemon", "create_server", "SERVICE_NAMES"]

log = logging.getLogger("forgetd.server")

INFERENCE_SERVICE = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
UNLEARNING_SERVICE = unlearning_service_pb2.DESCRIPTOR.services_by_name["UnlearningService"].full_name
SERVICE_NAMES = (INFERENCE_SERVICE, UNLEARNING_SERVICE)


class Daemon:
    """One store served over gRPC. Use `create_server`; `with` starts it and stops it with grace."""

    def __init__(self, config: ServerConfig, *, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> None:
        self.config = config
        self._slot = RuntimeSlot()
        chain = list(interceptors)
        token = None
        if config.token is not None:
            protected = PROTECTED_METHODS | (LEDGER_READ_METHODS if config.ledger_reads == "token" else frozenset())
            token = BearerTokenInterceptor(config.token, protected)
            chain.insert(0, token)
        chain.insert(0, MalformedRequests())  # outermost: it wraps whatever handler the others let through
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="forgetd-rpc"),
            interceptors=chain,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),  # two daemons on one port would split the traffic silently
            ],
        )
        self._health = Health()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(self._slot), self._server)
        unlearning_service_pb2_grpc.add_UnlearningServiceServicer_to_server(
            UnlearningServicer(self._slot, _reveals_ids(token)), self._server)
        self.oip = OipModel(self._slot)  # the Open Inference Protocol's view of the model, shared by its fronts
        add_oip_servicer(self.oip, self._server)
        # The OIP messages live in their own descriptor pool (forgetd.oip.POOL), which reflection cannot merge
        # with the default one, so reflection lists forgetd.v1 and health; OIP clients bring their own stubs.
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), self._server)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            if config.tls:
                self.port = self._server.add_secure_port(config.listen, server_credentials(config))
            else:
                self.port = self._server.add_insecure_port(config.listen)
        except RuntimeError as exc:  # grpc raises a bare RuntimeError when it cannot bind
            raise InvalidConfig(f"cannot listen on {config.listen} ({exc}); is another server using the port?") from None
        self.address = f"{config.listen.rpartition(':')[0]}:{self.port}"
        self.http: HttpFront | None = None
        if config.http_listen is not None:
            try:
                self.http = _http_front(config, self._slot, self.oip)
            except BaseException:
                self._server.stop(0)  # releases the gRPC port bound above
                raise
        self.http_port = self.http.port if self.http is not None else None
        self.http_address = self.http.address if self.http is not None else None
        self._started = False
        self._stopped = threading.Event()
        # After stop(): a forget batch was still running in the engine at the end of the grace, left to finish
        # in this process or be redone at restart. A process should then exit at once (os._exit): interpreter
        # shutdown would wait for torch's work in that thread.
        self.abandoned = False
        self._threads = contextlib.ExitStack()  # torch's thread setting while serving, restored at stop

    def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES, OIP_SERVICE_NAME):
            self._health.set(name, status)

    def _forgetting(self, halt_reason: str | None) -> None:
        """The Unlearning service's health follows the worker: NOT_SERVING while forgetting is halted (inference
        goes on SERVING); the reason is in the log and in GetModel."""
        serving = health_pb2.HealthCheckResponse.SERVING if halt_reason is None else health_pb2.HealthCheckResponse.NOT_SERVING
        self._health.set(UNLEARNING_SERVICE, serving)

    @property
    def runtime(self) -> Runtime:
        """The loaded runtime; NotServing before start() finished."""
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
            if self.http is not None:
                self.http.start()  # answers at once: ready is 503 until the runtime is in the slot
            self._threads.enter_context(serving_threads())
            runtime = Runtime.open(self.config)
        except BaseException:
            self._server.stop(0)
            if self.http is not None:
                self.http.stop(0)
            self._threads.close()
            raise
        with self._slot.lock:
            if self._slot.shutting_down:  # stop() raced with loading: close what we opened
                runtime.close()
                return
            self._slot.runtime = runtime
        runtime.start(on_halt=self._forgetting)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._forgetting(runtime.halt_reason)  # a halt between the two lines above would be overwritten
        log.info("serving model version %d (%s) on %s%s%s", runtime.live.version, runtime.live.digest[:16],
                 self.address, f" and HTTP {self.http_address}" if self.http_address else "",
                 " with TLS" if self.config.tls else "")

    def stop(self, grace: float | None = None) -> None:
        """Drains within `grace` seconds. Health goes NOT_SERVING at once and keeps answering while new calls are
        refused (UNAVAILABLE); the worker finishes the batch in progress and starts another only if it should
        end within the grace (what it leaves stays durable for the restart); then calls in flight get what
        is left of the grace, the ports close and the ledger is closed."""
        grace = self.config.grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        with self._slot.lock:
            if self._slot.shutting_down:
                self._stopped.wait()
                return
            self._slot.shutting_down = True  # servicers refuse new calls from here on
            runtime = self._slot.runtime
        self._health.enter_graceful_shutdown()  # NOT_SERVING for every service, and nothing sets it back
        log.info("shutting down within %.1f s: health NOT_SERVING, new calls refused; finishing the forget in "
                 "progress", grace)
        finished = runtime.stop(_left(deadline)) if runtime is not None else True
        self._health.end_watches()  # they saw NOT_SERVING; left open they would hold the drain to its end
        done = self._server.stop(_left(deadline))  # calls in flight (a waited Forget) get what is left
        if self.http is not None:
            self.http.shutdown(_left(deadline))  # the same for HTTP: no new connections, requests in flight finish
        done.wait()
        if self.http is not None:
            self.http.wait(max(0.5, _left(deadline)))  # before the runtime closes: a request in flight still reads it
        self.abandoned = not finished
        if runtime is not None and finished:
            runtime.close()
        elif runtime is not None:
            log.warning("the forget batch in progress did not finish within the %.1f s grace; its requests are "
                        "durable and are applied when the server restarts", grace)
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


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _reveals_ids(token: BearerTokenInterceptor | None) -> Callable[[grpc.ServicerContext], bool]:
    """Whether a call may see a pending request's raw sample ids: it carries the token (anyone, without one)."""
    if token is None:
        return lambda context: True
    return lambda context: token.carried_by(context.invocation_metadata())


def _http_front(config: ServerConfig, slot: RuntimeSlot, oip: OipModel) -> HttpFront:
    # FastAPI and uvicorn load only when the HTTP port is on, so a gRPC-only daemon starts without them.
    from forgetd.server.api.http.app import create_app
    from forgetd.server.api.http.context import HttpContext
    from forgetd.server.api.http.server import HttpFront

    assert config.http_listen is not None
    context = HttpContext(slot, oip, token=config.token, max_body_bytes=config.max_message_bytes,
                          ledger_reads=config.ledger_reads)
    return HttpFront(create_app(context), config.http_listen, tls_cert=config.tls_cert, tls_key=config.tls_key,
                     tls_client_ca=config.tls_client_ca)


def create_server(config: ServerConfig, *,
                  interceptors: Sequence[grpc.ServerInterceptor] = ()) -> tuple[Daemon, int]:
    """A daemon bound to config.listen (port 0 = a free port) and the port it got; `with` the daemon to run it."""
    daemon = Daemon(config, interceptors=interceptors)
    return daemon, daemon.port
