"""HttpFront: an ASGI app (the daemon's, or a bench's baseline) served by uvicorn in a thread of this process.

    front = HttpFront(create_app(context), "127.0.0.1:0")   # binds now: front.port is the port it got
    front.start()                                          # serving once this returns
    front.shutdown(grace); front.wait()                    # no new connections; calls in flight finish

The socket is bound in the constructor, as the gRPC port is, so a port in use fails `create_server` with
InvalidConfig and port 0 is resolved before anything starts. uvicorn installs no signal handlers outside
the main thread, which is what the daemon wants: it owns SIGTERM and stops this front itself.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import uvicorn

from forgetd.server.errors import InvalidConfig

__all__ = ["HttpFront"]

_START_TIMEOUT_S = 60.0  # startup is in-memory work (no I/O but the bound socket); far more than it needs
_MIN_GRACE_S = 0.5


class _Server(uvicorn.Server):
    """uvicorn's server, telling a waiting thread when it accepts connections (or failed to)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class HttpFront:
    """`app` on HOST:PORT (port 0 picks a free one); HTTPS with tls_cert/tls_key, mTLS with tls_client_ca."""

    def __init__(self, app: Any, listen: str, *, tls_cert: Path | None = None, tls_key: Path | None = None,
                 tls_client_ca: Path | None = None) -> None:
        host, _, port = listen.rpartition(":")
        self._socket = _bind(host.strip("[]"), int(port), listen)
        self.port = int(self._socket.getsockname()[1])
        self.address = f"{host}:{self.port}"
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, log_level="warning", access_log=False,
            ssl_certfile=tls_cert, ssl_keyfile=tls_key, ssl_ca_certs=tls_client_ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca is not None else ssl.CERT_NONE)
        try:
            config.load()  # reads the certificate and key now, so a bad one fails here and not in the thread
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._socket.close()
            raise InvalidConfig(f"the HTTP front cannot use the TLS files ({exc}); give a PEM certificate chain "
                                "and its private key") from None
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._serve, name="forgetd-http", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it in the caller
            self._server.error = exc
        finally:
            self._socket.close()
            self._server.ready.set()

    def start(self) -> None:
        """Serves from the moment this returns; raises what uvicorn raised if it could not start."""
        self._thread.start()
        if not self._server.ready.wait(_START_TIMEOUT_S) or not self._server.started:
            self.shutdown(0)
            raise RuntimeError(f"the HTTP front on {self.address} did not start") from self._server.error

    def shutdown(self, grace: float) -> None:
        """Stops accepting connections; requests in flight get `grace` seconds, then are cancelled."""
        # uvicorn hands the timeout to asyncio.wait_for, which takes seconds as a float. The floor lets an idle
        # front close its sockets (one loop turn) without "timeout graceful shutdown exceeded" in the log.
        self._server.config.timeout_graceful_shutdown = max(grace, _MIN_GRACE_S)  # type: ignore[assignment]
        self._server.should_exit = True

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until the front has stopped (at most grace plus uvicorn's own tenth-of-a-second ticks)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._thread.ident:
            self._socket.close()  # never started

    def stop(self, grace: float = 5.0) -> None:
        self.shutdown(grace)
        self.wait(grace + 5.0)


def _bind(host: str, port: int, listen: str) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InvalidConfig(f"cannot listen on {listen} for HTTP ({exc}); give HOST:PORT with a local "
                            "address") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebinding after a restart (TIME_WAIT)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidConfig(f"cannot listen on {listen} for HTTP ({exc.strerror}); is another server using "
                            "the port?") from None
    return sock
