"""Check 5, live (with a server): the daemon serves the ledger head's model, and its ledger extends the store's.

GetModel must report the head's version, digests, genesis's head key and feature encoder; Predict on the store's test rows
must answer what the live parameters answer (forgetd.server.replay computes those, with the server extra),
so the daemon is shown to serve those parameters, not only to report their digest; its signed head must
verify under genesis's key and be consistent with the store's.
"""

from __future__ import annotations

from pathlib import Path

from forgetd.client.audit.encoder import committed_digest
from forgetd.client.audit.events import Events, Model
from forgetd.client.audit.report import CheckResult, Findings
from forgetd.client.client import Client
from forgetd.client.errors import ForgetdClientError
from forgetd.client.receipts import check_head_signature, head_of
from forgetd.ledger import ConsistencyProof, Head, LedgerError, verify_consistency

__all__ = ["PREDICT_TOLERANCE", "check_live"]

# Probabilities from a daemon on another device (or its lean CPU predictor) differ in the last bits only.
PREDICT_TOLERANCE = 1e-5


def check_live(server: str | Client, events: Events, head: Head, root: Path) -> CheckResult:
    c = Findings("live")
    client = Client(server) if isinstance(server, str) else server
    want = events.live_model()
    try:
        _check_model(client, events, want, head, c)
        _check_served_parameters(client, root, want, head, c)
        _check_server_head(client, events, head, c)
    except ForgetdClientError as exc:
        c.add(None, f"cannot query the server: {exc}")
    finally:
        if isinstance(server, str):
            client.close()
    v = want.version if want else 0
    return c.done(f"the server serves version {v}, the ledger head's, and its signed head extends the store's")


def _check_model(client: Client, events: Events, want: Model | None, head: Head, c: Findings) -> None:
    info = client.model()
    if want is not None and (info.version, info.digest) != (want.version, want.digest):
        c.add(head.size, "the server serves a model other than the ledger head's",
              f"version {want.version} {want.digest}", f"version {info.version} {info.digest}")
    elif want is not None and tuple(info.shard_digests) != want.shard_digests:
        c.add(head.size, "the server's shard digests differ from the ledger head's", list(want.shard_digests),
              list(info.shard_digests))
    if events.head_public_key is not None and info.head_public_key != events.head_public_key.hex():
        c.add(1, "the server's head key is not the one genesis recorded", events.head_public_key.hex(),
              info.head_public_key)
    committed = committed_digest(events.genesis.get("engine")) if events.genesis is not None else None
    if committed is not None and info.input_schema is not None and info.input_schema.encoder_digest != committed:
        c.add(1, "the server encodes raw records with a feature encoder other than the one genesis committed",
              committed, info.input_schema.encoder_digest)


def _check_served_parameters(client: Client, root: Path, want: Model | None, head: Head, c: Findings) -> None:
    """Predict on the store's test rows must give what the live parameters (proved equal to the head's by the
    data check) give: the daemon serves those parameters, it does not only report their digest."""
    try:
        from forgetd.server.replay import store_predictions
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "numpy"):
            raise
        c.notices.append("Predict answers not compared with the store's parameters (needs the server extra)")
        return
    try:
        X, expected = store_predictions(root)
    except (OSError, ValueError, KeyError) as exc:
        c.add(None, f"cannot compute the store's own predictions: {exc}")
        return
    answer = client.predict(X)
    if want is not None and (answer.model_version, answer.model_digest) != (want.version, want.digest):
        c.add(head.size, "Predict was answered by a model other than the ledger head's",
              f"version {want.version} {want.digest}", f"version {answer.model_version} {answer.model_digest}")
    worst = max((abs(float(p) - float(q)) for row, ref in zip(answer.probabilities, expected.tolist())
                 for p, q in zip(row, ref)), default=0.0)
    c.figures.update(predict_rows=len(X), predict_max_abs_diff=worst)
    if len(answer.probabilities) != len(X) or worst > PREDICT_TOLERANCE:
        c.add(head.size, f"Predict answers differ from the live parameters' on {len(X)} test rows (the daemon "
                         "serves other parameters than it reports)", f"max |delta| <= {PREDICT_TOLERANCE:g}",
              f"{worst:.3g}")


def _check_server_head(client: Client, events: Events, head: Head, c: Findings) -> None:
    """The server's signed head verifies under genesis's key and extends the store's ledger."""
    now = client.head(consistency_from=head.size)
    try:
        server_head = head_of(now.head)
    except LedgerError as exc:  # a server's answer is a finding too, however malformed
        c.add(head.size, f"the server's head is malformed: {exc}")
        return
    bad = check_head_signature(server_head, now.head.signature, now.head.public_key, events.head_public_key,
                               "the server's head")
    if bad is not None:
        c.problems.append(bad)
    try:
        hashes = now.consistency.hashes if now.consistency is not None else ()
        verify_consistency(head, server_head, ConsistencyProof(head.size, server_head.size, tuple(hashes)))
    except LedgerError as exc:
        c.add(head.size, f"the server's ledger does not extend the store's: {exc}", head.to_hex(),
              server_head.to_hex())
    if server_head.size != head.size:
        c.notices.append(f"the server's ledger has {server_head.size} entries, the store's {head.size}: "
                         "compared against the store's head")
