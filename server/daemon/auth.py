"""Who may connect and who may call: the TLS (and mTLS) credentials of the port, and the bearer-token
interceptor that guards the methods that change what the model knows."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from forgetd.server.config import ServerConfig
from forgetd.server.errors import InvalidConfig

__all__ = ["PROTECTED_METHODS", "LEDGER_READ_METHODS", "BearerTokenInterceptor", "server_credentials"]

# Methods that change what the model knows; every other method reads, and stays open to auditors.
PROTECTED_METHODS = frozenset({"/forgetd.v1.UnlearningService/Forget"})
# The ledger reads, which `--ledger-reads token` protects too: their answers name requests by their ids.
LEDGER_READ_METHODS = frozenset({f"/forgetd.v1.UnlearningService/{m}"
                                 for m in ("ReadLedger", "GetLedgerHead", "GetForgetRequest")})


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


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Aborts calls to protected methods with UNAUTHENTICATED unless they carry `authorization: Bearer <token>`."""

    def __init__(self, token: str, protected: frozenset[str] = PROTECTED_METHODS) -> None:
        self._expected = f"Bearer {token}".encode()
        self._protected = protected

        def deny(message: str) -> grpc.RpcMethodHandler:
            def abort(request: object, context: grpc.ServicerContext) -> None:
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
        given = self._given(handler_call_details.invocation_metadata)
        if given is None:
            return self._missing
        # Constant time, so the token cannot be guessed byte by byte from response times.
        if not hmac.compare_digest(given, self._expected):
            return self._wrong
        return continuation(handler_call_details)

    def carried_by(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        """Whether a call's metadata carries the valid token (for what a call may see, not whether it may call)."""
        given = self._given(metadata or ())
        return given is not None and hmac.compare_digest(given, self._expected)

    @staticmethod
    def _given(metadata: Sequence[tuple[str, str | bytes]]) -> bytes | None:
        given = next((v for k, v in metadata if k == "authorization"), None)
        if given is None:
            return None
        return given.encode() if isinstance(given, str) else bytes(given)
