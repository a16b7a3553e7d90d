"""The running daemon: admission of Forget requests, the single unlearning worker, and recovery at start.

Why one worker: the engine mutates one store, and every forget.applied must describe exactly one step from
the previous live version to the next, in ledger order. Admission threads only validate and append
`forget.requested` (durable before the answer); the worker drains what is pending, coalesces consecutive
requests that asked for the same strategy into one engine call, appends `forget.applied`, and only then
swaps the live model (one reference assignment; Predict reads the reference once per call).

Crash safety rests on two records: the ledger (what was asked and what was applied) and the store's tag,
which the engine writes atomically with every new live version and which names the requests of the
batch. At start `Runtime.open` folds the ledger; a batch the engine applied whose forget.applied is
missing is written from the tag (never applied twice), and every other pending request is applied again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from forgetd.ledger import subject_ref

from forgetd.server.runtime import events
from forgetd.server.config import ServerConfig
from forgetd.server.errors import InvalidRequest, NotServing, RequestIdConflict, RequestNotFound, StoreError, UnknownSample
from forgetd.server.runtime.events import Applied, LedgerFold, ModelState, Requested, SubjectOutcome
from forgetd.server.runtime.ledger_writer import Journal
from forgetd.server.runtime.predictor import Predict, predictor_for

log = logging.getLogger("forgetd.server")

HEAD_KEY = "keys/head_ed25519.key"  # inside the store, beside the subject key
TAG_FORMAT = "forgetd.batch.v1"


@dataclass(frozen=True)
class LiveModel:
    """What Predict and GetModel read: swapped as a whole after each forget.applied."""

    snapshot: Any  # the engine's immutable ModelSnapshot
    predict: Predict  # answers Predict for this version (see predictor.py)
    version: int
    digest: str
    shard_digests: tuple[str, ...]
    ledger_seq: int  # the entry that published this version (genesis for version 0)
    forgotten_count: int


@dataclass(frozen=True)
class ModelInfo:
    """What does not change while the daemon runs."""

    config: Any  # EngineConfig
    budget_samples: int
    threshold_m: int
    training_accuracy: float
    num_features: int
    num_classes: int
    device: str
    head_public_key: str  # hex


@dataclass(frozen=True)
class RequestView:
    """A Forget request as it stands: its ledger entries, and per requested sample what forgot it."""

    requested: Requested
    applied: Applied | None
    # (sample id as requested, or "" when only its ref survives a restart; subject ref; (batch, outcome) or None)
    samples: tuple[tuple[str, str, tuple[Applied, SubjectOutcome] | None], ...]


@dataclass
class _Pending:
    requested: Requested  # its subjects name the samples; the worker maps them to the store's ids
    enqueued: float  # time.monotonic()
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _state(result_like: Any) -> ModelState:
    return ModelState(int(result_like.version), str(result_like.digest), tuple(result_like.shard_digests))


class Runtime:
    """One open store: its engine, its ledger, the live model and the worker. Built by `Runtime.open`."""

    def __init__(self, config: ServerConfig, engine: Any, journal: Journal) -> None:
        self.config = config
        self.engine = engine
        self.ledger = journal
        self._key: bytes = engine.subject_key
        self._fold = LedgerFold()
        self._lock = threading.Lock()  # guards the fold, the queue, _remaining and the appends' order
        self._work = threading.Condition(self._lock)
        self._queue: deque[str] = deque()
        self._pending: dict[str, _Pending] = {}
        self._raw_ids: dict[str, tuple[str, ...]] = {}
        # Subject ref -> the id as the store spells it, for the samples still in the store. The ledger names a
        # sample by the ref of its NFC form, so a client may spell an id in any Unicode normal form; the
        # engine is always handed the store's own spelling.
        self._remaining: dict[str, str] = {}
        self._stopping = False
        self._halted = False  # set when a batch failed: no further batch may run before a restart
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self.live: LiveModel
        self.info: ModelInfo

    # ------------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, config: ServerConfig) -> Runtime:
        from forgetd.server.engine.engine import Engine  # torch

        engine = Engine.open(config.store, device=config.device)
        try:
            journal = Journal(engine.ledger_path, config.store / HEAD_KEY)
        except BaseException:
            engine.close()  # it holds the store's writer lock
            raise
        runtime = cls(config, engine, journal)
        try:
            runtime._recover()
        except BaseException:
            runtime.close()
            raise
        return runtime

    def _append(self, event_type: str, payload: dict[str, Any], event_id: str) -> Any:
        """Appends and folds in one step (caller holds the lock), so the fold is always the ledger's state."""
        entry = self.ledger.append(event_type, payload, event_id=event_id)
        if entry.seq > self._fold.size + 1:
            # Another process appended meanwhile (`forgetd verify --seal` records audit.verified events):
            # fold those entries first, so the fold stays the ledger's state.
            for missed in self.ledger.read(self._fold.size + 1, entry.seq - 1 - self._fold.size):
                self._fold.add(missed.seq, missed.type, missed.leaf_hash, missed.payload)
        self._fold.add(entry.seq, entry.type, entry.leaf_hash, entry.payload)
        return entry

    def _recover(self) -> None:
        engine, fold = self.engine, self._fold
        for entry in self.ledger.entries():
            fold.add(entry.seq, entry.type, entry.leaf_hash, entry.payload)
        public_key = self.ledger.public_key.hex()
        with self._lock:
            if fold.size == 0:
                if engine.version != 0:
                    raise StoreError(f"{self.config.store}: the store is at version {engine.version} but has no "
                                     "ledger; it was changed outside forgetd serve and cannot be audited")
                from forgetd.server.store.vault import GENESIS_VAULT, create_vault

                # The snapshot a full replay starts from (`forgetd verify`), committed in genesis; made first,
                # so a crash before the append only leaves a vault that the next start makes again.
                vault = create_vault(self.config.store, GENESIS_VAULT)
                payload = events.genesis_payload(engine.genesis_record(), public_key, _state(_EngineState(engine)),
                                                 vault=vault.to_json())
                self._append(events.GENESIS, payload, events.GENESIS)
                log.info("wrote genesis for %s", self.config.store)
            if fold.genesis is None:
                raise StoreError(f"{engine.ledger_path}: the ledger has no genesis entry; it is not this store's")
            if fold.genesis.head_public_key != public_key:
                raise StoreError(f"{self.config.store / HEAD_KEY} is not the head key the ledger's genesis recorded; "
                                 "restore the original key file")
            self._finish_applied_batch()
            said = fold.live_model()
            assert said is not None
            if engine.version != said.version or engine.digest() != said.digest:
                raise StoreError(f"the store is at version {engine.version} ({engine.digest()[:16]}) but the ledger "
                                 f"says version {said.version} ({said.digest[:16]}); they do not belong together "
                                 "(was one of them restored from a backup or copied from another deployment?)")
            stored = engine.sample_ids()
            by_ref = {subject_ref(self._key, i): i for i in stored}
            if len(by_ref) != len(stored):
                raise StoreError(f"{self.config.store}: the training data has ids that are equal after Unicode NFC "
                                 "normalisation; the ledger could not tell those samples apart")
            self._remaining = by_ref
            back = [ref for ref in fold.forgotten if ref in by_ref]
            if back:
                raise StoreError(f"{len(back)} sample(s) the ledger says were forgotten are in the store's data "
                                 f"again (first ref {back[0]}); run `forgetd verify`")
            now = time.monotonic()
            for req in fold.pending():
                missing = [r for r in req.subjects if r not in by_ref and r not in fold.forgotten]
                if missing:
                    raise StoreError(f"request {req.request_id!r} (seq {req.seq}) names subject {missing[0]} that "
                                     "is neither in the store nor forgotten by the ledger")
                ids = tuple(by_ref.get(r, "") for r in req.subjects)
                self._pending[req.request_id] = _Pending(req, now)
                self._raw_ids[req.request_id] = ids
                self._queue.append(req.request_id)
            if self._queue:
                log.info("recovery: %d acknowledged request(s) to apply again", len(self._queue))
            applied_seq = fold.last_applied.seq if fold.last_applied else fold.genesis.seq
            snapshot = engine.snapshot()
            self.live = LiveModel(snapshot, predictor_for(snapshot), said.version, said.digest, said.shard_digests,
                                  applied_seq, len(fold.forgotten))
        config = engine.config
        self.info = ModelInfo(
            config=config,
            budget_samples=int(engine.budget),
            threshold_m=int(engine.m),
            training_accuracy=float(engine.training_accuracy),
            num_features=int(engine.num_features),
            num_classes=int(engine.num_classes),
            device=str(engine.device),
            head_public_key=public_key,
        )

    def _finish_applied_batch(self) -> None:
        """The engine published a batch but the daemon died before its forget.applied: write it from the tag."""
        said = self._fold.live_model()
        assert said is not None
        tag = _parse_tag(self.engine.live_tag)
        if self.engine.version != said.version + 1 or tag is None:
            return  # nothing to finish; any other disagreement is refused by the caller's check
        rids = tag["request_ids"]
        if [r.request_id for r in self._fold.pending()[: len(rids)]] != rids:
            raise StoreError(f"the store's live version {self.engine.version} was made by requests {rids} that are "
                             "not the ledger's oldest pending requests")
        payload = events.applied_payload(
            request_ids=rids,
            strategy=tag["strategy"],
            resolved_strategy=tag["resolved_strategy"],
            subjects=[SubjectOutcome(**s) for s in tag["subjects"]],
            model=_state(_EngineState(self.engine)),
            residue_steps=tag["residue_steps"],
            samples_read=tag["samples_read"],
            apply_micros=0,
            queued_micros=0,
            recovered=True,
            device=tag.get("device"),  # where it ran before the crash, which may not be where we run now
        )
        entry = self._append(events.FORGET_APPLIED, payload, events.applied_event_id(rids))
        log.warning("recovery: version %d was applied before the crash; recorded it at seq %d from the store",
                    self.engine.version, entry.seq)

    # ------------------------------------------------------------------------------------------ admission

    def submit(self, sample_ids: Sequence[str], strategy: str, request_id: str) -> RequestView:
        """Validates a Forget against the live data and makes it durable; NOT_FOUND or a conflict writes nothing."""
        refs = [subject_ref(self._key, i) for i in sample_ids]
        if len(set(refs)) != len(refs):
            raise InvalidRequest("two sample ids are the same id after Unicode NFC normalisation; name it once")
        with self._lock:
            if self._stopping:
                raise NotServing("the server is shutting down; send the Forget again once it is back")
            known = self._fold.requests.get(request_id)
            if known is not None:
                if known.subjects != tuple(refs) or known.strategy != strategy:
                    raise RequestIdConflict(f"request_id {request_id!r} was already used (seq {known.seq}) for "
                                            "other samples or another strategy; use a new request_id")
                return self._view(request_id)
            if self._halted:
                raise NotServing("forgetting is halted after an internal error; the server must be restarted "
                                 "(acknowledged requests are durable and will be applied)")
            unknown = [i for i, r in zip(sample_ids, refs) if r not in self._remaining and r not in self._fold.forgotten]
            if unknown:
                raise UnknownSample(unknown)
            payload = events.requested_payload(request_id, refs, strategy, _now())
            entry = self._append(events.FORGET_REQUESTED, payload, events.requested_event_id(request_id))
            ids = tuple(sample_ids)
            self._pending[request_id] = _Pending(self._fold.requests[request_id], time.monotonic())
            self._raw_ids[request_id] = ids
            self._queue.append(request_id)
            self._work.notify()
            log.debug("forget %s requested at seq %d (%d ids, %s)", request_id, entry.seq, len(ids), strategy)
            return self._view(request_id)

    def request(self, request_id: str) -> RequestView:
        with self._lock:
            if request_id not in self._fold.requests:
                raise RequestNotFound(f"no Forget with request_id {request_id!r} is in the ledger")
            return self._view(request_id)

    def wait_applied(self, request_id: str, time_remaining: Callable[[], float | None],
                     is_active: Callable[[], bool]) -> RequestView:
        """Blocks until the request is applied (or the caller goes away); NotServing if shutdown comes first."""
        with self._lock:
            pending = self._pending.get(request_id)
        if pending is not None:
            while not pending.done.is_set() and is_active():
                remaining = time_remaining()
                pending.done.wait(1.0 if remaining is None else max(0.0, min(1.0, remaining)))
            if pending.failed:
                raise RuntimeError(f"applying request {request_id} failed; it stays pending in the ledger")
        view = self.request(request_id)
        if view.applied is None and (pending is None or pending.done.is_set()):
            raise NotServing(f"the server is shutting down before request {request_id!r} was applied; it is "
                             f"durable at seq {view.requested.seq} and will be applied when the server restarts")
        return view

    def _view(self, request_id: str) -> RequestView:
        req = self._fold.requests[request_id]
        ids = self._raw_ids.get(request_id) or ("",) * len(req.subjects)
        forgotten = self._fold.forgotten
        return RequestView(
            requested=req,
            applied=self._fold.applied_by_request.get(request_id),
            samples=tuple((i, ref, forgotten.get(ref)) for i, ref in zip(ids, req.subjects)),
        )

    # ------------------------------------------------------------------------------------------ the worker

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="forgetd-unlearner", daemon=True)
        self._thread.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Refuses new requests; applies what is queued for up to `drain_seconds` (the batch in progress always
        finishes), then stops the worker and wakes every waiter. What is left stays durable for the restart."""
        with self._lock:
            self._stopping = True
            self._drain_until = time.monotonic() + drain_seconds
            self._work.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for pending in self._pending.values():
                pending.done.set()

    def close(self) -> None:
        self.ledger.close()
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def _run(self) -> None:
        from forgetd.server.engine.training import deterministic

        # torch imports its compiler stack the first time deterministic mode is switched on (seconds on a
        # small CPU); pay that here, while Predict is already served, not inside the first Forget.
        with deterministic():
            pass
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._work.wait()
                if self._stopping and (not self._queue or time.monotonic() > self._drain_until):
                    return
                batch = self._take_batch()
            try:
                self._apply(batch)
            except Exception:  # noqa: BLE001 - logged; the requests stay durable and pending
                # The store and the ledger may now disagree (the engine may have published a version whose
                # forget.applied is missing). Applying more would compound that; restart recovery resolves it
                # from the store's tag, so the worker halts and admission answers UNAVAILABLE until then.
                log.exception("applying forget batch %s failed; the worker has stopped: restart the daemon to "
                              "apply the acknowledged requests", [p.requested.request_id for p in batch])
                with self._lock:
                    self._halted = True
                    for p in self._pending.values():
                        p.failed = True
                        p.done.set()
                return

    def _take_batch(self) -> list[_Pending]:
        """The oldest pending request and every following one with the same strategy (ledger order kept)."""
        first = self._pending[self._queue.popleft()]
        batch = [first]
        while (self._queue and len(batch) < self.config.max_batch_requests
               and self._pending[self._queue[0]].requested.strategy == first.requested.strategy):
            batch.append(self._pending[self._queue.popleft()])
        return batch

    def _apply(self, batch: list[_Pending]) -> None:
        strategy = batch[0].requested.strategy
        rids = [p.requested.request_id for p in batch]
        with self._lock:
            ids: list[str] = []
            taken: set[str] = set()  # refs of `ids`
            for p in batch:
                for ref in p.requested.subjects:
                    if ref in self._remaining and ref not in taken:
                        ids.append(self._remaining[ref])
                        taken.add(ref)
        queued = int((time.monotonic() - min(p.enqueued for p in batch)) * 1e6)
        started = time.perf_counter()
        if ids:
            snapshot, payload = self._forget(ids, strategy, rids, queued)
            predict = predictor_for(snapshot)  # built before the swap, so the swap is one assignment
        else:  # every sample was forgotten by an earlier batch while these waited: nothing to change
            snapshot, predict = self.live.snapshot, self.live.predict
            payload = events.applied_payload(
                request_ids=rids, strategy=strategy, resolved_strategy=self._resolve(strategy), subjects=[],
                model=ModelState(self.live.version, self.live.digest, self.live.shard_digests),
                residue_steps=0, samples_read=0, apply_micros=0, queued_micros=queued,
            )  # fmt: skip
        with self._lock:
            entry = self._append(events.FORGET_APPLIED, payload, events.applied_event_id(rids))
            for ref in taken:
                del self._remaining[ref]
            model = payload["model"]
            self.live = LiveModel(snapshot, predict, model["version"], model["digest"],
                                  tuple(model["shard_digests"]), entry.seq, len(self._fold.forgotten))
            for p in batch:
                del self._pending[p.requested.request_id]
                p.done.set()
        log.info("forget batch of %d request(s), %d sample(s), %s: version %d at seq %d in %.1f ms", len(batch),
                 len(ids), strategy, model["version"], entry.seq, (time.perf_counter() - started) * 1e3)

    def _forget(self, ids: list[str], strategy: str, rids: list[str], queued: int) -> tuple[Any, dict[str, Any]]:
        engine = self.engine
        ref = {i: subject_ref(self._key, i) for i in ids}
        # The tag is stored atomically with the new version: if the daemon dies before forget.applied is
        # appended, recovery writes the event from it. It holds refs, never ids (the store keeps it).
        plan = engine.plan(ids, strategy)
        tag = {
            "format": TAG_FORMAT,
            "request_ids": rids,
            "strategy": strategy,
            "resolved_strategy": plan.strategy,
            "subjects": [_outcome(s, ref[s.sample_id]).to_json() for s in plan.samples],
            # The plan knows no residue and only estimates the reads; a recovered event says so (recovered).
            "residue_steps": 0,
            "samples_read": int(plan.estimated_samples_read),
            "device": str(engine.device),
        }
        result = engine.forget(ids, strategy, tag=json.dumps(tag, sort_keys=True))
        snapshot = engine.snapshot()
        payload = events.applied_payload(
            request_ids=rids,
            strategy=strategy,
            resolved_strategy=str(result.strategy),
            subjects=[_outcome(s, ref[s.sample_id]) for s in result.samples],
            model=_state(result),
            residue_steps=int(result.residue_steps),
            samples_read=int(result.samples_read),
            apply_micros=int(result.seconds * 1e6),
            queued_micros=queued,
            device=str(engine.device),
        )
        return snapshot, payload

    def _resolve(self, strategy: str) -> str:
        return str(self.engine.config.default_strategy) if strategy == "auto" else strategy


class _EngineState:
    """The engine's live version in the shape `_state` reads."""

    def __init__(self, engine: Any) -> None:
        self.version, self.digest, self.shard_digests = engine.version, engine.digest(), engine.shard_digests()


def _outcome(sample: Any, ref: str) -> SubjectOutcome:
    # The engine spells guarantees EXACT/APPROXIMATE; the ledger schema uses lower case throughout.
    return SubjectOutcome(ref, int(sample.shard), int(sample.slice), str(sample.region), str(sample.strategy),
                          str(sample.guarantee).lower())


def _parse_tag(tag: str | None) -> dict[str, Any] | None:
    if not tag:
        return None
    try:
        data = json.loads(tag)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("format") == TAG_FORMAT else None
