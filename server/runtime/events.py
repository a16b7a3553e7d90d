"""The daemon's ledger events: how each payload is built, read back and folded into the ledger's state.

Pure: JSON in, frozen dataclasses out; no I/O, no torch. The auditor (forgetd.client.audit; docs/unlearning.md) parses the same events with
its own code, so the schema below is the contract. Every payload is a JSON object with no floats and
integers below 2^53 (the ledger canonicalises it with RFC 8785). Sample ids never appear: a sample is named
by its subject ref, HMAC-SHA256(deployment key, NFC id) in lower-case hex (`forgetd.ledger.subject_ref`).

``genesis`` -- event_id ``"genesis"``; written once, when a store is first served, before anything else::

    {"engine": {...},                    # engine.genesis_record(): config, data digest, artifact digests
     "head_public_key": "<hex>",         # raw 32-byte Ed25519 key that signs ledger heads
     "checkpoint_origin": "<origin>",    # the origin line of the ledger's C2SP checkpoints (forgetd.ledger.
                                          # checkpoint.validate_origin); absent in ledgers written before it,
                                          # whose checkpoints use default_origin(head public key)
     "model": {"version": 0, "digest": "<hex>", "shard_digests": ["<hex>", ...]},
     "vault": {...}}                     # forgetd.server.store.vault.VaultRecord of audit/genesis: the snapshot a
                                          # replay starts from (absent in ledgers written before the vault)

``forget.requested`` -- event_id ``"forget.requested:<request_id>"``; durable before the Forget is answered::

    {"request_id": "<id>",
     "subjects": ["<subject ref>", ...],  # in request order, no duplicates; may include refs an earlier
                                          # batch already forgot (the request still names them)
     "strategy": "auto"|"retrain"|"sisa"|"dpus"|"hs"|"ohs"|"influence"|"certified",   # as asked
     "requested_at": "<RFC 3339 UTC>"}

``forget.applied`` -- event_id ``"forget.applied:<first request id of the batch>"``; appended after the engine
published the new version and before the daemon serves it. One batch coalesces one or more requests that
asked for the same strategy, in ledger order::

    {"request_ids": ["<id>", ...],       # every request this batch completes, in ledger order
     "strategy": "<as asked>",           # the argument given to the engine; replay passes it again
     "resolved_strategy": "<a strategy>",  # never "auto"
     "subjects": [{"subject_ref": "<hex>", "shard": int, "slice": int (1-based), "region": "update"|"retrain",
                   "strategy": "<what this sample got>", "guarantee": "exact"|"certified"|"approximate"}, ...],
                                          # the samples this batch removed, in the order given to the engine
     "model": {"version": int, "digest": "<hex>", "shard_digests": ["<hex>", ...]},   # the new live version
     "guarantee": "exact"|"certified"|"approximate",  # the weakest of its subjects' guarantees
     "residue_steps": int, "samples_read": int,
     "timings": {"apply_micros": int, "queued_micros": int},   # engine time; oldest request's wait
     "recovered": bool,                   # true: written at restart from the store's record of a batch
                                          # the engine had applied when the daemon died (not applied twice)
     "device": "cpu"|"cuda:0"|...,        # where the engine ran it: replay is bitwise on the same device type
                                          # (absent in ledgers written before it was recorded)
     "encoder_residue": [{"feature": int, "column": str, "category": str}, ...],  # categories the batch left
                                          # without a training row (engine/encoder_residue.py); only when any
     "influence": [...], "certified": {...}}   # INFLUENCE / CERTIFIED only: docs/unlearning.md 10, audit.gold too

``audit.verified`` -- appended by `forgetd verify --seal`, never by the daemon (its schema is in
forgetd.client.audit.events); the fold skips it like any event type it does not know, and the worker folds
it in order when it appears between two of its own appends.

A batch whose every sample was forgotten by an earlier batch while it waited (two pending requests naming
the same id with different strategies) has ``"subjects": []``: the engine is not called and ``model`` repeats
the live version unchanged. Replay skips it and checks that the digests did not move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forgetd.ledger import InvalidOrigin, validate_origin

from forgetd.server.errors import InvalidEvent, MalformedEvent
from forgetd.server.vocabulary import CONCRETE_STRATEGIES, GUARANTEES, REGIONS, STRATEGIES, weakest_guarantee

__all__ = ["GENESIS", "FORGET_REQUESTED", "FORGET_APPLIED", "MalformedEvent", "ModelState", "Genesis", "Requested",
           "SubjectOutcome", "Applied", "LedgerFold", "requested_event_id", "applied_event_id", "genesis_payload",
           "requested_payload", "applied_payload", "parse_genesis", "parse_requested", "parse_applied"]

GENESIS = "genesis"
FORGET_REQUESTED = "forget.requested"
FORGET_APPLIED = "forget.applied"


def requested_event_id(request_id: str) -> str:
    return f"{FORGET_REQUESTED}:{request_id}"


def applied_event_id(request_ids: Iterable[str]) -> str:
    # A request is completed by exactly one batch, so its first request id names the batch uniquely.
    return f"{FORGET_APPLIED}:{next(iter(request_ids))}"


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelState:
    version: int
    digest: str
    shard_digests: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "digest": self.digest, "shard_digests": list(self.shard_digests)}


@dataclass(frozen=True)
class Genesis:
    seq: int
    engine: Mapping[str, Any]
    head_public_key: str
    model: ModelState
    checkpoint_origin: str | None = None  # None: a genesis from before the field (the default origin applies)


@dataclass(frozen=True)
class Requested:
    seq: int
    leaf_hash: bytes
    request_id: str
    subjects: tuple[str, ...]
    strategy: str
    requested_at: str


@dataclass(frozen=True)
class SubjectOutcome:
    subject_ref: str
    shard: int
    slice: int
    region: str
    strategy: str
    guarantee: str

    def to_json(self) -> dict[str, Any]:
        return {
            "subject_ref": self.subject_ref,
            "shard": self.shard,
            "slice": self.slice,
            "region": self.region,
            "strategy": self.strategy,
            "guarantee": self.guarantee,
        }


@dataclass(frozen=True)
class Applied:
    seq: int
    leaf_hash: bytes
    request_ids: tuple[str, ...]
    strategy: str
    resolved_strategy: str
    subjects: tuple[SubjectOutcome, ...]
    model: ModelState
    guarantee: str
    residue_steps: int
    samples_read: int
    apply_micros: int
    queued_micros: int
    recovered: bool
    encoder_residue: tuple[Mapping[str, Any], ...] = ()  # as the payload has it; () when absent


# ---------------------------------------------------------------------------------------------------- builders


def genesis_payload(engine_record: Mapping[str, Any], head_public_key: str, model: ModelState,
                    vault: Mapping[str, Any] | None = None, checkpoint_origin: str | None = None) -> dict[str, Any]:
    if model.version != 0:
        raise InvalidEvent(f"genesis records version 0, got version {model.version}")
    payload = {"engine": dict(engine_record), "head_public_key": head_public_key, "model": model.to_json()}
    if checkpoint_origin is not None:
        try:
            payload["checkpoint_origin"] = validate_origin(checkpoint_origin)
        except InvalidOrigin as exc:
            raise InvalidEvent(str(exc)) from None
    if vault is not None:
        payload["vault"] = dict(vault)
    return payload


def requested_payload(request_id: str, subjects: Iterable[str], strategy: str, requested_at: str) -> dict[str, Any]:
    refs = list(subjects)
    if strategy not in STRATEGIES:
        raise InvalidEvent(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not refs or len(set(refs)) != len(refs):
        raise InvalidEvent("a forget.requested names at least one subject and no subject twice")
    return {"request_id": request_id, "subjects": refs, "strategy": strategy, "requested_at": requested_at}


def applied_payload(
    *,
    request_ids: Iterable[str],
    strategy: str,
    resolved_strategy: str,
    subjects: Iterable[SubjectOutcome],
    model: ModelState,
    residue_steps: int,
    samples_read: int,
    apply_micros: int,
    queued_micros: int,
    recovered: bool = False,
    device: str | None = None,
    encoder_residue: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    outcomes = list(subjects)
    guarantee = weakest_guarantee(s.guarantee for s in outcomes)
    payload = {
        "request_ids": list(request_ids),
        "strategy": strategy,
        "resolved_strategy": resolved_strategy,
        "subjects": [s.to_json() for s in outcomes],
        "model": model.to_json(),
        "guarantee": guarantee,
        "residue_steps": residue_steps,
        "samples_read": samples_read,
        "timings": {"apply_micros": apply_micros, "queued_micros": queued_micros},
        "recovered": recovered,
    }
    if device is not None:
        payload["device"] = device
    if residue := [dict(r) for r in encoder_residue]:
        payload["encoder_residue"] = residue
    return payload


# ---------------------------------------------------------------------------------------------------- parsers


class _Reader:
    """Typed field access that names the seq and the field path on the first thing out of place."""

    def __init__(self, seq: int, event_type: str) -> None:
        self.where = f"seq {seq} ({event_type})"

    def fail(self, path: str, want: str, got: object) -> MalformedEvent:
        return MalformedEvent(f"{self.where}: field {path!r} must be {want}, got {got!r}")

    def get(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if not isinstance(obj, Mapping):
            raise self.fail(path.rsplit(".", 1)[0] or path, "an object", obj)
        if key not in obj:
            raise MalformedEvent(f"{self.where}: field {path!r} is missing")
        return obj[key]

    def text(self, obj: Mapping[str, Any], key: str, path: str = "", choices: tuple[str, ...] = ()) -> str:
        path = path or key
        value = self.get(obj, key, path)
        if not isinstance(value, str) or (choices and value not in choices):
            raise self.fail(path, f"one of {', '.join(choices)}" if choices else "a string", value)
        return value

    def natural(self, obj: Mapping[str, Any], key: str, path: str = "") -> int:
        path = path or key
        value = self.get(obj, key, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(path, "a non-negative integer", value)
        return value

    def flag(self, obj: Mapping[str, Any], key: str, path: str = "") -> bool:
        value = self.get(obj, key, path or key)
        if not isinstance(value, bool):
            raise self.fail(path or key, "true or false", value)
        return value

    def texts(self, obj: Mapping[str, Any], key: str, path: str = "", *, nonempty: bool = False) -> tuple[str, ...]:
        path = path or key
        value = self.get(obj, key, path)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (nonempty and not value):
            raise self.fail(path, "a non-empty list of strings" if nonempty else "a list of strings", value)
        return tuple(value)

    def model(self, obj: Mapping[str, Any], key: str) -> ModelState:
        m = self.get(obj, key, key)
        return ModelState(
            version=self.natural(m, "version", f"{key}.version"),
            digest=self.text(m, "digest", f"{key}.digest"),
            shard_digests=self.texts(m, "shard_digests", f"{key}.shard_digests", nonempty=True),
        )


def parse_genesis(seq: int, payload: Mapping[str, Any]) -> Genesis:
    r = _Reader(seq, GENESIS)
    engine = r.get(payload, "engine", "engine")
    if not isinstance(engine, Mapping):
        raise r.fail("engine", "an object", engine)
    origin = None
    if isinstance(payload, Mapping) and "checkpoint_origin" in payload:
        origin = r.text(payload, "checkpoint_origin")
        try:
            validate_origin(origin)
        except InvalidOrigin as exc:
            raise r.fail("checkpoint_origin", "a checkpoint origin", origin) from exc
    return Genesis(seq, engine, r.text(payload, "head_public_key"), r.model(payload, "model"), origin)


def parse_requested(seq: int, leaf_hash: bytes, payload: Mapping[str, Any]) -> Requested:
    r = _Reader(seq, FORGET_REQUESTED)
    subjects = r.texts(payload, "subjects", nonempty=True)
    if len(set(subjects)) != len(subjects):
        raise r.fail("subjects", "a list without duplicates", list(subjects))
    return Requested(
        seq=seq,
        leaf_hash=leaf_hash,
        request_id=r.text(payload, "request_id"),
        subjects=subjects,
        strategy=r.text(payload, "strategy", choices=STRATEGIES),
        requested_at=r.text(payload, "requested_at"),
    )


def parse_applied(seq: int, leaf_hash: bytes, payload: Mapping[str, Any]) -> Applied:
    r = _Reader(seq, FORGET_APPLIED)
    raw_subjects = r.get(payload, "subjects", "subjects")
    if not isinstance(raw_subjects, list):
        raise r.fail("subjects", "a list", raw_subjects)
    subjects = tuple(
        SubjectOutcome(
            subject_ref=r.text(s, "subject_ref", f"subjects[{i}].subject_ref"),
            shard=r.natural(s, "shard", f"subjects[{i}].shard"),
            slice=r.natural(s, "slice", f"subjects[{i}].slice"),
            region=r.text(s, "region", f"subjects[{i}].region", REGIONS),
            strategy=r.text(s, "strategy", f"subjects[{i}].strategy", CONCRETE_STRATEGIES),
            guarantee=r.text(s, "guarantee", f"subjects[{i}].guarantee", GUARANTEES),
        )
        for i, s in enumerate(raw_subjects)
    )
    timings = r.get(payload, "timings", "timings")
    return Applied(
        seq=seq,
        leaf_hash=leaf_hash,
        request_ids=r.texts(payload, "request_ids", nonempty=True),
        strategy=r.text(payload, "strategy", choices=STRATEGIES),
        resolved_strategy=r.text(payload, "resolved_strategy", choices=CONCRETE_STRATEGIES),
        subjects=subjects,
        model=r.model(payload, "model"),
        guarantee=r.text(payload, "guarantee", choices=GUARANTEES),
        residue_steps=r.natural(payload, "residue_steps"),
        samples_read=r.natural(payload, "samples_read"),
        apply_micros=r.natural(timings, "apply_micros", "timings.apply_micros"),
        queued_micros=r.natural(timings, "queued_micros", "timings.queued_micros"),
        recovered=r.flag(payload, "recovered"),
        encoder_residue=tuple(r for r in payload.get("encoder_residue", ()) if isinstance(r, Mapping)),
    )


# ---------------------------------------------------------------------------------------------------- the fold


@dataclass
class LedgerFold:
    """The daemon's state as the ledger states it: fold every entry in seq order with `add`.

    Event types it does not know (checkpoints, audits) are skipped, so later issues can add events without
    breaking older daemons. Inconsistencies (an applied batch naming an unknown request, a request applied
    twice, a subject forgotten twice) raise MalformedEvent: the daemon refuses to serve a ledger it cannot trust.
    """

    genesis: Genesis | None = None
    requests: dict[str, Requested] = field(default_factory=dict)
    applied_by_request: dict[str, Applied] = field(default_factory=dict)
    # subject ref -> (the batch that forgot it, what it got)
    forgotten: dict[str, tuple[Applied, SubjectOutcome]] = field(default_factory=dict)
    last_applied: Applied | None = None
    size: int = 0

    def add(self, seq: int, event_type: str, leaf_hash: bytes, payload: Mapping[str, Any]) -> None:
        if seq != self.size + 1:
            raise MalformedEvent(f"seq {seq}: entries must be folded in order, expected seq {self.size + 1}")
        self.size = seq
        if event_type == GENESIS:
            if self.genesis is not None or seq != 1:
                raise MalformedEvent(f"seq {seq}: genesis must be the first entry and appear once")
            self.genesis = parse_genesis(seq, payload)
        elif event_type == FORGET_REQUESTED:
            req = parse_requested(seq, leaf_hash, payload)
            if req.request_id in self.requests:
                raise MalformedEvent(f"seq {seq}: request_id {req.request_id!r} already requested at "
                                     f"seq {self.requests[req.request_id].seq}")
            self.requests[req.request_id] = req
        elif event_type == FORGET_APPLIED:
            batch = parse_applied(seq, leaf_hash, payload)
            for rid in batch.request_ids:
                if rid not in self.requests:
                    raise MalformedEvent(f"seq {seq}: forget.applied names request {rid!r} that was never requested")
                if rid in self.applied_by_request:
                    raise MalformedEvent(f"seq {seq}: request {rid!r} was already applied at "
                                         f"seq {self.applied_by_request[rid].seq}")
                self.applied_by_request[rid] = batch
            for outcome in batch.subjects:
                if outcome.subject_ref in self.forgotten:
                    first = self.forgotten[outcome.subject_ref][0].seq
                    raise MalformedEvent(f"seq {seq}: subject {outcome.subject_ref} was already forgotten at seq {first}")
                self.forgotten[outcome.subject_ref] = (batch, outcome)
            self.last_applied = batch

    def pending(self) -> list[Requested]:
        """Requests without their forget.applied, in ledger order."""
        return sorted((r for rid, r in self.requests.items() if rid not in self.applied_by_request),
                      key=lambda r: r.seq)

    def live_model(self) -> ModelState | None:
        """The model the ledger says is live: the last batch's, else genesis's; None on an empty ledger."""
        if self.last_applied is not None:
            return self.last_applied.model
        return self.genesis.model if self.genesis is not None else None
