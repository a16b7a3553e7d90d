"""Recovery at start: bring the ledger and the store into agreement before anything is served.

Crash safety rests on two records: the ledger (what was asked and what was applied) and the store's batch
tag, which the engine writes atomically with every new live version and which names the batch's requests
and what its forget.applied says. A batch the engine applied whose forget.applied is missing is written
from the tag (never applied twice), and every other pending request is queued to be applied again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from forgetd.ledger import default_origin

from forgetd.server.config import ServerConfig
from forgetd.server.errors import StoreError
from forgetd.server.runtime import events
from forgetd.server.runtime.events import Genesis, LedgerFold, ModelState
from forgetd.server.runtime.live import LiveModel, ModelFacts
from forgetd.server.runtime.predictor import predictor_for
from forgetd.server.runtime.retraining import finish_retrain
from forgetd.server.runtime.state import RuntimeState
from forgetd.server.runtime.worker import applied_from_tag
from forgetd.server.store.layout import StorePaths

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine

__all__ = ["recover"]

log = logging.getLogger("forgetd.server")


def recover(config: ServerConfig, engine: Engine, state: RuntimeState) -> ModelFacts:
    """Fold the ledger into `state` and reconcile it with the store, in this order:

    1. fold every entry;
    2. on an empty ledger, snapshot the genesis vault and append genesis (a store that is not at version 0
       then was changed outside the daemon, and is refused);
    3. check that the genesis is this store's and that its head key is the store's; sign checkpoints under the
       origin it committed (the default for a genesis without one);
    4. record a batch (or a retrain) the engine published but the ledger lacks, from the store's tag;
    5. check that the store's live version is the ledger's, and that no forgotten sample is back in its data;
    6. queue every acknowledged request without its forget.applied, to be applied again;
    7. set the live model; return the facts GetModel answers with.

    Any disagreement is a StoreError naming both sides; nothing is served then.
    """
    fold = state.fold
    for entry in state.ledger.entries():
        fold.add(entry.seq, entry.type, entry.leaf_hash, entry.payload)
    public_key = state.ledger.public_key.hex()
    with state.lock:
        if fold.size == 0:
            _write_genesis(config, engine, state, public_key)
        genesis = _check_genesis(config, engine, fold, public_key)
        state.ledger.use_origin(_checkpoint_origin(config, genesis, state.ledger.public_key))
        _finish_applied_batch(engine, state)
        finish_retrain(engine, state)  # or a retrain (--gold-retrain), from its retrain tag
        said = _check_live_version(engine, fold)
        state.remaining = _present_subjects(config, engine, state)
        _requeue_pending(state)
        applied_seq = fold.live_seq()
        snapshot = engine.snapshot()
        state.live = LiveModel.of(snapshot, predictor_for(snapshot), said, applied_seq, len(fold.forgotten))
    return ModelFacts(config=engine.config, budget_samples=engine.budget, threshold_m=engine.m,
                      training_accuracy=engine.training_accuracy, test_accuracy=_test_accuracy(engine),
                      num_features=engine.num_features,
                      num_classes=engine.num_classes, device=engine.device, head_public_key=public_key,
                      checkpoint_origin=state.ledger.origin, verifier_key=state.ledger.verifier_key,
                      encoder=engine.encoder)


def _test_accuracy(engine: Engine) -> float:
    """The test split's accuracy measured at training time, as genesis commits it (0 without a test split)."""
    return int(engine.genesis_record().get("test_accuracy_ppm", 0)) / 1e6


def live_state(engine: Engine) -> ModelState:
    """The engine's live version as the ledger records a model."""
    return ModelState(engine.version, engine.digest(), tuple(engine.shard_digests()))


def _write_genesis(config: ServerConfig, engine: Engine, state: RuntimeState, public_key: str) -> None:
    if engine.version != 0:
        raise StoreError(f"{config.store}: the store is at version {engine.version} but has no ledger; it was "
                         "changed outside forgetd serve and cannot be audited")
    from forgetd.server.store.vault import GENESIS_VAULT, create_vault

    # The snapshot a full replay starts from (`forgetd verify`), committed in genesis; made first, so a
    # crash before the append only leaves a vault that the next start makes again.
    vault = create_vault(config.store, GENESIS_VAULT)
    origin = config.checkpoint_origin or default_origin(state.ledger.public_key)
    payload = events.genesis_payload(engine.genesis_record(), public_key, live_state(engine), vault=vault.to_json(),
                                     checkpoint_origin=origin)
    state.append(events.GENESIS, payload, events.GENESIS)
    log.info("wrote genesis for %s", config.store)


def _check_genesis(config: ServerConfig, engine: Engine, fold: LedgerFold, public_key: str) -> Genesis:
    if fold.genesis is None:
        raise StoreError(f"{engine.ledger_path}: the ledger has no genesis entry; it is not this store's")
    if fold.genesis.head_public_key != public_key:
        raise StoreError(f"{StorePaths(config.store).head_key} is not the head key the ledger's genesis "
                         "recorded; restore the original key file")
    return fold.genesis


def _checkpoint_origin(config: ServerConfig, genesis: Genesis, public_key: bytes) -> str:
    """The origin genesis committed; a genesis from before the field uses the default, which is stable for the key."""
    committed = genesis.checkpoint_origin or default_origin(public_key)
    if config.checkpoint_origin is not None and config.checkpoint_origin != committed:
        how = "commits" if genesis.checkpoint_origin else "commits no origin, so its checkpoints use the default"
        raise StoreError(f"the ledger's genesis {how} checkpoint origin {committed!r}, not "
                         f"{config.checkpoint_origin!r}: an origin is fixed when a store is first served; drop "
                         "--checkpoint-origin or give that one")
    return committed


def _finish_applied_batch(engine: Engine, state: RuntimeState) -> None:
    """The engine published a batch but the daemon died before its forget.applied: write it from the tag."""
    said = state.fold.live_model()
    assert said is not None
    tag = engine.live_batch
    if engine.version != said.version + 1 or tag is None:
        return  # nothing to finish; any other disagreement is refused by the caller's next check
    rids = list(tag.request_ids)
    if [r.request_id for r in state.fold.pending()[: len(rids)]] != rids:
        raise StoreError(f"the store's live version {engine.version} was made by requests {rids} that are "
                         "not the ledger's oldest pending requests")
    # device: where it ran before the crash, which may not be where we run now
    payload = applied_from_tag(tag, live_state(engine), apply_micros=0, queued_micros=0, recovered=True,
                               device=tag.device)
    entry = state.append(events.FORGET_APPLIED, payload, events.applied_event_id(rids))
    log.warning("recovery: version %d was applied before the crash; recorded it at seq %d from the store",
                engine.version, entry.seq)


def _check_live_version(engine: Engine, fold: LedgerFold) -> ModelState:
    said = fold.live_model()
    assert said is not None
    if engine.version != said.version or engine.digest() != said.digest:
        raise StoreError(f"the store is at version {engine.version} ({engine.digest()[:16]}) but the ledger "
                         f"says version {said.version} ({said.digest[:16]}); they do not belong together "
                         "(was one of them restored from a backup or copied from another deployment?)")
    return said


def _present_subjects(config: ServerConfig, engine: Engine, state: RuntimeState) -> dict[str, str]:
    """Subject ref -> the store's id, for every sample still in the store. The engine names each row by the
    HMAC of its id and refuses one whose ref is not refs.npy's at the row's position, so a row put back (or
    rewritten) behind forgetd's back is refused here, before anything is served."""
    by_ref = engine.stored_subjects()  # and refuses two ids equal after Unicode NFC normalisation
    back = [ref for ref in state.fold.forgotten if ref in by_ref]
    if back:
        raise StoreError(f"{len(back)} sample(s) the ledger says were forgotten are in the store's data "
                         f"again (first ref {back[0]}); run `forgetd verify`")
    return by_ref


def _requeue_pending(state: RuntimeState) -> None:
    fold, by_ref = state.fold, state.remaining
    now = time.monotonic()
    for req in fold.pending():
        missing = [r for r in req.subjects if r not in by_ref and r not in fold.forgotten]
        if missing:
            raise StoreError(f"request {req.request_id!r} (seq {req.seq}) names subject {missing[0]} that "
                             "is neither in the store nor forgotten by the ledger")
        state.enqueue(req, tuple(by_ref.get(r, "") for r in req.subjects), now)
    if state.queue:
        log.info("recovery: %d acknowledged request(s) to apply again", len(state.queue))
