"""Auth and transport security: the bearer token on Forget, TLS, and mTLS with certificates made here."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from forgetd.v1 import inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import Pki, running_daemon

TOKEN = "s3cret-token"


# ------------------------------------------------------------------------------------------------ certificates


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
