"""Auth and transport security: the bearer token on Forget, TLS, and mTLS with certificates made here."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forgetd.v1 import inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from conftest import running_daemon

TOKEN = "s3cret-token"


# ------------------------------------------------------------------------------------------------ certificates


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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
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


def _forget(unlearning, metadata=None, sample: str = "synthetic:1"):
    return unlearning.Forget(upb.ForgetRequest(sample_ids=[sample], wait=True), metadata=metadata)


def test_forget_needs_the_bearer_token_and_reads_stay_open(store: Path) -> None:
    with running_daemon(store, token=TOKEN) as running:
        inference, unlearning = running.stubs()
        for metadata, want in [
            (None, "this call needs a bearer token: send metadata 'authorization: Bearer <token>'"),
            ((("authorization", "Bearer wrong"),), "the bearer token is not valid for this server"),
            ((("authorization", TOKEN),), "the bearer token is not valid for this server"),  # no "Bearer "
        ]:
            with pytest.raises(grpc.RpcError) as info:
                _forget(unlearning, metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and info.value.details() == want
        assert inference.GetModel(ipb.GetModelRequest()).version == 0  # nothing was applied or written
        assert len(list(unlearning.ReadLedger(upb.ReadLedgerRequest()))) == 1
        answer = _forget(unlearning, (("authorization", f"Bearer {TOKEN}"),))
        assert answer.status == upb.FORGET_STATUS_APPLIED
        assert unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id=answer.request_id)).forget.status \
            == upb.FORGET_STATUS_APPLIED


# ------------------------------------------------------------------------------------------------ TLS


def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(store: Path, pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca)
    with running_daemon(store, tls_cert=pki.server_cert, tls_key=pki.server_key, channel_credentials=creds) as running:
        inference, _ = running.stubs()
        assert inference.GetModel(ipb.GetModelRequest()).version == 0
        with grpc.insecure_channel(running.address) as plain:
            with pytest.raises(grpc.RpcError) as info:
                plain_stub(plain).GetModel(ipb.GetModelRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_accepts_a_client_certificate_from_the_ca_and_refuses_others(store: Path, pki: Pki) -> None:
    good = grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
    with running_daemon(store, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.client_ca,
                        token=TOKEN, channel_credentials=good) as running:
        inference, unlearning = running.stubs()
        assert inference.GetModel(ipb.GetModelRequest()).num_features > 0
        assert _forget(unlearning, (("authorization", f"Bearer {TOKEN}"),)).status == upb.FORGET_STATUS_APPLIED
        target = f"localhost:{running.address.rsplit(':', 1)[1]}"
        for creds in (grpc.ssl_channel_credentials(pki.ca),  # no client certificate at all
                      grpc.ssl_channel_credentials(pki.ca, pki.rogue_key, pki.rogue_cert)):
            with grpc.secure_channel(target, creds) as channel:
                with pytest.raises(grpc.RpcError) as info:
                    plain_stub(channel).GetModel(ipb.GetModelRequest(), timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def plain_stub(channel: grpc.Channel):
    from forgetd.v1 import inference_service_pb2_grpc

    return inference_service_pb2_grpc.InferenceServiceStub(channel)
