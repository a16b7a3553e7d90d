"""The witness over HTTP: `POST /add-checkpoint` (c2sp.org/tlog-witness) with Starlette, served by uvicorn.

    with WitnessServer(witness, "127.0.0.1", 0) as server:   # port 0: any free port, see server.port
        request_cosignature(server.url, old_size, proof, signed_checkpoint)

A thin translation: the body goes to Witness.add_checkpoint (in a worker thread, as it waits on SQLite) and
its (status, headers, body) come back as they are. Starlette and uvicorn are needed here only, so the rest
of forgetd.ledger imports without them.

The listening socket is bound before uvicorn starts, so `port` is known and connections are accepted
(queued by the kernel) as soon as the constructor returns: nobody waits for a "started" flag.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .witness import MAX_REQUEST_SIZE, Witness


def create_app(witness: Witness) -> Starlette:
    """The ASGI app: POST /add-checkpoint; Starlette answers 404 and 405 for anything else."""

    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_SIZE:
                break  # add_checkpoint refuses an oversized body with 400; no need to read the rest
        answer = await run_in_threadpool(witness.add_checkpoint, bytes(body))
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])


class WitnessServer:
    """`witness` served on host:port (port 0 picks a free one), in a background thread or in the foreground."""

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0) -> None:
        self.witness = witness
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        self.host, self.port = host, int(self._socket.getsockname()[1])
        config = uvicorn.Config(create_app(witness), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The submission prefix: POST {url}/add-checkpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (uvicorn handles them in the main thread)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self) -> WitnessServer:
        self._thread = threading.Thread(target=self.serve_forever, name="forgetd-witness", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._socket.close()

    def __enter__(self) -> WitnessServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
