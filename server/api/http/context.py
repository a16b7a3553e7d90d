"""What every HTTP router reads: the daemon's context, bearer auth, and the body-size limit.

Routers import this module, never app.py: app.py imports the routers to register them, so a router that
imported it back would close an import cycle.
"""

from __future__ import annotations

import hmac
import zlib
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from forgetd.server.api.oip_model import OipModel
from forgetd.server.errors import InvalidRequest
from forgetd.server.runtime.slot import RuntimeSlot


class Unauthenticated(Exception):
    """A protected route was called without the right `Authorization: Bearer <token>` header (HTTP 401)."""


class PayloadTooLarge(Exception):
    """The request body is over the daemon's message limit (HTTP 413)."""


@dataclass(frozen=True)
class HttpContext:
    """What every router reads: the runtime slot, the OIP model view, and the daemon's HTTP settings."""

    slot: RuntimeSlot
    oip: OipModel
    token: str | None = None  # bearer token for routes that change what the model knows; None = no auth
    max_body_bytes: int = 64 * 1024 * 1024  # as the gRPC message limit
    ledger_reads: str = "open"  # "token": reading the ledger and forget requests needs the token too (as gRPC)

    def holds_token(self, request: Request) -> bool:
        """Whether the request carries the bearer token (always true on a server without one)."""
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    def require_read(self, request: Request) -> None:
        """The gRPC front's rule for reads: open, unless the daemon runs with --ledger-reads token."""
        if self.ledger_reads == "token":
            self.require_token(request)

    def require_token(self, request: Request) -> None:
        """Raises Unauthenticated unless the request carries the configured bearer token (constant time)."""
        if self.token is None:
            return
        given = request.headers.get("authorization")
        if given is None:
            raise Unauthenticated("this call needs a bearer token: send the header 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise Unauthenticated("the bearer token is not valid for this server")

    async def read_body(self, request: Request) -> bytes:
        """The whole body, decompressed when its Content-Encoding is gzip or deflate; PayloadTooLarge past
        max_body_bytes (compressed or not), InvalidRequest for an encoding it cannot read."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _drain(request, limit)
            raise PayloadTooLarge(_too_large(limit))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # a chunked body has no Content-Length to refuse up front
                await _drain(request, limit)
                raise PayloadTooLarge(_too_large(limit))
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return bytes(body)
        return await run_in_threadpool(_decoded, bytes(body), encoding, limit)  # inflating takes a while


def context_of(request: Request) -> HttpContext:
    """The context create_app stored on the application."""
    context: HttpContext = request.app.state.context
    return context


async def _drain(request: Request, limit: int) -> None:
    # Read (and drop) up to another `limit` bytes before answering 413: a client still sending when the
    # server closes gets a reset instead of the answer. Past that the connection is closed, as nginx does.
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return
    except (RuntimeError, ClientDisconnect):  # read to its end already, or the client gave up
        return


def _too_large(limit: int) -> str:
    return (f"the request body is over {limit} bytes, this server's limit (forgetd serve --max-message-mib); "
            "send fewer rows per request")


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise InvalidRequest(f"Content-Encoding {encoding!r} is not supported; send the body plain, gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)  # bounded: a small bomb must not fill the memory
    except zlib.error as exc:
        raise InvalidRequest(f"the body is not valid {encoding} data ({exc}); check Content-Encoding") from None
    if len(out) > limit:
        raise PayloadTooLarge(_too_large(limit) + f" (after {encoding} decompression)")
    return out
