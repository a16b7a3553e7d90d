"""The auditor's own reading of the ledger's events (the schema in forgetd.server.runtime.events' docstring).

Written apart from the daemon's parser on purpose: an audit that read the ledger with the code that wrote it
would share its bugs. Pure and torch-free. A payload that does not follow the schema, or an event that does
not follow from the ones before it (an applied batch naming an unknown request, a subject forgotten twice, a
version that does not step by one), is a Problem naming its seq: a finding, never an exception.

``audit.verified`` (appended by `forgetd verify --seal`) -- event_id ``"audit.verified:<size>"``::

    {"verified": {"size": int, "chain_hash": "<hex>", "merkle_root": "<hex>"},   # the head the audit proved
     "model": {"version": int, "digest": "<hex>", "shard_digests": [...]},        # live at that head
     "vault": {...},             # the record of the snapshot sealed at that head (forgetd.server.store.vault)
     "replayed": int,            # forget.applied events the audit re-executed
     "replay_device": "cpu"|..., "bitwise": bool,
     "previous_vault": "<name>"} # the vault the audit replayed from, deleted by the seal

``audit.gold`` and forget.applied's `influence` and `certified` fields are read by forgetd.client.audit.newton_events,
``model.retrained`` (a full retrain after a failed gold check, with no forget) by forgetd.client.audit.retrain_events.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forgetd.client.audit.newton_events import AUDIT_GOLD, Gold, applied_details, parse_gold
from forgetd.client.audit.retrain_events import MODEL_RETRAINED, retrained_fields
from forgetd.client.types import STRATEGIES
from forgetd.ledger import LedgerError, Problem, default_origin, validate_origin

GENESIS = "genesis"
REQUESTED = "forget.requested"
APPLIED = "forget.applied"
AUDIT_VERIFIED = "audit.verified"


class _Bad(Exception):
    def __init__(self, path: str, want: str, got: object) -> None:
        super().__init__(path)
        self.path, self.want, self.got = path, want, got


@dataclass(frozen=True)
class Model:
    version: int
    digest: str
    shard_digests: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "digest": self.digest, "shard_digests": list(self.shard_digests)}


@dataclass(frozen=True)
class Outcome:
    subject_ref: str
    shard: int
    slice: int
    region: str
    strategy: str
    guarantee: str


@dataclass(frozen=True)
class Batch:
    """One forget.applied event as the auditor reads it."""

    seq: int
    request_ids: tuple[str, ...]
    strategy: str  # as asked; replay passes it again
    resolved_strategy: str
    subjects: tuple[Outcome, ...]
    model: Model
    apply_micros: int
    device: str | None  # None in ledgers written before the device was recorded
    details: Mapping[str, Any] | None = None  # INFLUENCE's, CERTIFIED's figures; None: recovered (newton_events)
    retrain_of: int | None = None  # a model.retrained (no requests, no subjects): the audit.gold seq it answered


@dataclass(frozen=True)
class Request:
    seq: int
    request_id: str
    subjects: tuple[str, ...]
    strategy: str


@dataclass(frozen=True)
class Audit:
    seq: int
    verified_size: int
    verified: Mapping[str, Any]
    model: Model
    vault: Mapping[str, Any]


@dataclass
class Events:
    """The ledger's events folded in seq order; `problems` lists every entry that did not fit."""

    genesis_seq: int | None = None
    genesis: Mapping[str, Any] | None = None
    head_public_key: bytes | None = None
    # The origin genesis committed for the ledger's checkpoints; None for a genesis from before the field
    # (its checkpoints use default_origin of the head key: see checkpoint_origin_in_force).
    committed_origin: str | None = None
    genesis_model: Model | None = None
    requests: dict[str, Request] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    applied_by_request: dict[str, int] = field(default_factory=dict)  # request id -> seq of its batch
    forgotten: dict[str, int] = field(default_factory=dict)  # subject ref -> seq of the batch that forgot it
    audits: list[Audit] = field(default_factory=list)
    golds: list[Gold] = field(default_factory=list)  # audit.gold events (newton_events)
    problems: list[Problem] = field(default_factory=list)
    size: int = 0

    def live_model(self) -> Model | None:
        return self.batches[-1].model if self.batches else self.genesis_model

    @property
    def checkpoint_origin(self) -> str | None:
        """The origin the ledger's checkpoints are signed under: genesis's, or the default for its head key."""
        if self.committed_origin is not None:
            return self.committed_origin
        return default_origin(self.head_public_key) if self.head_public_key is not None else None

    def _digest_of_version(self, version: int) -> str | None:
        return next((m.digest for m in [self.genesis_model, *(b.model for b in self.batches)]
                     if m is not None and m.version == version), None)

    def model_at(self, size: int) -> Model | None:
        """The model the ledger says was live after its first `size` entries."""
        live = self.genesis_model
        for batch in self.batches:
            if batch.seq > size:
                break
            live = batch.model
        return live

    def pending(self) -> list[Request]:
        return sorted((r for r in self.requests.values() if r.request_id not in self.applied_by_request),
                      key=lambda r: r.seq)

    # -- folding ---------------------------------------------------------------------------------------

    def add(self, seq: int, event_type: str, payload: Any) -> None:
        self.size = seq
        try:
            if event_type == GENESIS:
                self._genesis(seq, payload)
            elif event_type == REQUESTED:
                self._requested(seq, payload)
            elif event_type == APPLIED:
                self._applied(seq, payload)
            elif event_type == AUDIT_VERIFIED:
                self._audit(seq, payload)
            elif event_type == AUDIT_GOLD:
                self.golds.append(parse_gold(seq, payload, self._digest_of_version))
            elif event_type == MODEL_RETRAINED:
                self._retrained(seq, payload)
            elif self.genesis_seq is None:
                self.problems.append(Problem(seq, f"{event_type} before genesis", "genesis at seq 1", event_type))
        except _Bad as bad:
            self.problems.append(Problem(seq, f"{event_type} field {bad.path!r} must be {bad.want}", bad.want,
                                         _short(bad.got)))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape the readers did not foresee
            self.problems.append(Problem(seq, f"{event_type} payload is malformed ({type(exc).__name__}: {exc})"))

    def _genesis(self, seq: int, p: Any) -> None:
        if self.genesis_seq is not None or seq != 1:
            self.problems.append(Problem(seq, "genesis must be the first entry and appear once", "seq 1", f"seq {seq}"))
            return
        engine = _get(p, "engine", "engine")
        if not isinstance(engine, Mapping):
            raise _Bad("engine", "an object", engine)
        key = _str(p, "head_public_key")
        try:
            raw = bytes.fromhex(key)
        except ValueError:
            raise _Bad("head_public_key", "32 bytes in hex", key) from None
        if len(raw) != 32:
            raise _Bad("head_public_key", "32 bytes in hex", key)
        self.genesis_seq, self.genesis, self.head_public_key = seq, p, raw
        self.genesis_model = _model(p, "model")
        if self.genesis_model.version != 0:
            raise _Bad("model.version", "0", self.genesis_model.version)
        if "checkpoint_origin" in p:  # absent in ledgers from before checkpoints: the default origin applies
            origin = _str(p, "checkpoint_origin")
            try:
                self.committed_origin = validate_origin(origin)
            except LedgerError:
                raise _Bad("checkpoint_origin", "a checkpoint origin (a schema-less URL)", origin) from None

    def _requested(self, seq: int, p: Any) -> None:
        self._need_genesis(seq)
        # Fast path first (100k entries a second is the aim); what it does not accept takes the typed
        # readers, which accept exactly the same and name the field that is wrong.
        rid, subjects, strategy = (p.get("request_id"), p.get("subjects"), p.get("strategy")) if type(p) is dict \
            else (None, None, None)
        if not (type(rid) is str and type(subjects) is list and subjects and strategy in _STRATEGY_SET
                and all(type(x) is str for x in subjects)):
            rid = _str(p, "request_id")
            subjects = _strs(p, "subjects", nonempty=True)
            strategy = _str(p, "strategy", choices=STRATEGIES)
        subjects = tuple(subjects)
        if len(set(subjects)) != len(subjects):
            raise _Bad("subjects", "a list without duplicates", list(subjects))
        if rid in self.requests:
            self.problems.append(Problem(seq, f"request {rid!r} was already requested at seq {self.requests[rid].seq}"))
            return
        self.requests[rid] = Request(seq, rid, subjects, strategy)

    def _applied(self, seq: int, p: Any) -> None:
        self._need_genesis(seq)
        batch = _fast_batch(seq, p) or _slow_batch(seq, p)
        rids, subjects = batch.request_ids, batch.subjects
        for rid in rids:
            req = self.requests.get(rid)
            if req is None:
                self.problems.append(Problem(seq, f"forget.applied names request {rid!r} that was never requested"))
            elif rid in self.applied_by_request:
                self.problems.append(Problem(seq, f"request {rid!r} was already applied at seq "
                                                  f"{self.applied_by_request[rid]}"))
            elif req.strategy != batch.strategy:
                self.problems.append(Problem(seq, f"request {rid!r} asked for {req.strategy} but its batch ran "
                                                  f"{batch.strategy}", req.strategy, batch.strategy))
            self.applied_by_request.setdefault(rid, seq)
        asked = {ref for rid in rids if rid in self.requests for ref in self.requests[rid].subjects}
        for o in subjects:
            if o.subject_ref in self.forgotten:
                self.problems.append(Problem(seq, f"subject {o.subject_ref} was already forgotten at seq "
                                                  f"{self.forgotten[o.subject_ref]}"))
            elif o.subject_ref not in asked:
                self.problems.append(Problem(seq, f"subject {o.subject_ref} was forgotten but none of the batch's "
                                                  "requests asked for it"))
            self.forgotten.setdefault(o.subject_ref, seq)
        before = self.live_model()
        want = (before.version + 1) if before is not None and subjects else (before.version if before else 0)
        if batch.model.version != want:
            self.problems.append(Problem(seq, "the model version does not follow the previous one",
                                         f"version {want}", f"version {batch.model.version}"))
        if not subjects and before is not None and batch.model != before:
            self.problems.append(Problem(seq, "a batch that forgot nothing changed the model", before.digest,
                                         batch.model.digest))
        self.batches.append(batch)

    def _retrained(self, seq: int, p: Any) -> None:
        self._need_genesis(seq)
        got = retrained_fields(seq, p, {g.seq: g for g in self.golds})
        batch = Batch(seq, (), "retrain", "retrain", (), _model(p, "model"), got.apply_micros, got.device,
                      retrain_of=got.gold_seq)
        before = self.live_model()
        if before is not None and batch.model.version != before.version + 1:
            self.problems.append(Problem(seq, "the retrained model's version does not follow the previous one",
                                         f"version {before.version + 1}", f"version {batch.model.version}"))
        self.batches.append(batch)

    def _audit(self, seq: int, p: Any) -> None:
        self._need_genesis(seq)
        verified = _get(p, "verified", "verified")
        size = _int(verified, "size", "verified.")
        if size >= seq:
            raise _Bad("verified.size", f"below its own seq {seq}", size)
        vault = _get(p, "vault", "vault")
        if not isinstance(vault, Mapping):
            raise _Bad("vault", "an object", vault)
        self.audits.append(Audit(seq, size, verified, _model(p, "model"), vault))

    def _need_genesis(self, seq: int) -> None:
        if self.genesis_seq is None:
            self.problems.append(Problem(seq, "an event before genesis", "genesis at seq 1", "none"))


def fold(entries: Iterable[tuple[int, str, Any]]) -> Events:
    """Fold (seq, type, payload) triples, in seq order."""
    events = Events()
    enabled = gc.isenabled()
    gc.disable()  # the fold allocates only acyclic objects; collection passes would dominate at 100k entries
    try:
        for seq, event_type, payload in entries:
            events.add(seq, event_type, payload)
    finally:
        if enabled:
            gc.enable()
    if events.genesis_seq is None and events.size:
        events.problems.insert(0, Problem(1, "the ledger has no genesis entry", "genesis", "none"))
    return events


# -- typed field access -----------------------------------------------------------------------------------------


def _get(obj: Any, key: str, path: str) -> Any:
    # Payloads come from json.loads, so objects are dicts; `type(...) is dict` keeps the hot path cheap.
    if type(obj) is not dict:
        raise _Bad(path.rsplit(".", 1)[0] if "." in path else "payload", "an object", obj)
    if key not in obj:
        raise _Bad(path, "present", "missing")
    return obj[key]


def _str(obj: Any, key: str, where: str = "", *, choices: tuple[str, ...] = ()) -> str:
    value = _get(obj, key, where + key)
    if type(value) is not str or (choices and value not in choices):
        raise _Bad(where + key, f"one of {', '.join(choices)}" if choices else "a string", value)
    return value


def _int(obj: Any, key: str, where: str = "") -> int:
    value = _get(obj, key, where + key)
    if type(value) is not int or value < 0:
        raise _Bad(where + key, "a non-negative integer", value)
    return value


def _strs(obj: Any, key: str, where: str = "", *, nonempty: bool = False) -> tuple[str, ...]:
    value = _get(obj, key, where + key)
    if type(value) is not list or not all(type(v) is str for v in value) or (nonempty and not value):
        raise _Bad(where + key, "a non-empty list of strings" if nonempty else "a list of strings", value)
    return tuple(value)


_STRATEGY_SET: frozenset[str] = frozenset(STRATEGIES)


def _fast_model(m: Any) -> Model | None:
    if type(m) is dict:
        version, digest, shards = m.get("version"), m.get("digest"), m.get("shard_digests")
        if (type(version) is int and version >= 0 and type(digest) is str and type(shards) is list and shards
                and all(type(d) is str for d in shards)):
            return Model(version, digest, tuple(shards))
    return None


def _fast_batch(seq: int, p: Any) -> Batch | None:
    """The batch when the payload is well formed (the common case), else None: the slow path explains."""
    if type(p) is not dict:
        return None
    rids, raw, timings, device = p.get("request_ids"), p.get("subjects"), p.get("timings"), p.get("device")
    strategy, resolved, model = p.get("strategy"), p.get("resolved_strategy"), _fast_model(p.get("model"))
    if not (type(rids) is list and rids and all(type(r) is str for r in rids) and type(raw) is list
            and type(timings) is dict and (device is None or type(device) is str) and model is not None
            and strategy in _STRATEGY_SET and resolved in _RESOLVED):
        return None
    micros = timings.get("apply_micros")
    if type(micros) is not int or micros < 0:
        return None
    return Batch(seq, tuple(rids), strategy, resolved, tuple(_outcome(s, i) for i, s in enumerate(raw)), model,
                 micros, device, applied_details(p))


def _slow_batch(seq: int, p: Any) -> Batch:
    rids = _strs(p, "request_ids", nonempty=True)
    raw = _get(p, "subjects", "subjects")
    if not isinstance(raw, list):
        raise _Bad("subjects", "a list", raw)
    subjects = tuple(_outcome(s, i) for i, s in enumerate(raw))
    timings = _get(p, "timings", "timings")
    device = p.get("device")
    if device is not None and not isinstance(device, str):
        raise _Bad("device", "a string", device)
    return Batch(seq, rids, _str(p, "strategy", choices=STRATEGIES), _str(p, "resolved_strategy", choices=STRATEGIES[1:]),
                 subjects, _model(p, "model"), _int(timings, "apply_micros", "timings."), device, applied_details(p))


_REGIONS = frozenset(("update", "retrain"))
_RESOLVED: frozenset[str] = frozenset(STRATEGIES[1:])
_GUARANTEES = frozenset(("exact", "certified", "approximate"))


def _outcome(s: Any, i: int) -> Outcome:
    # The fast path accepts exactly what the slow one does; anything else goes the slow way for its message.
    if type(s) is dict:
        ref, shard, sl, region, strategy, guarantee = (s.get("subject_ref"), s.get("shard"), s.get("slice"),
                                                       s.get("region"), s.get("strategy"), s.get("guarantee"))
        if (type(ref) is str and type(shard) is int and shard >= 0 and type(sl) is int and sl >= 0
                and region in _REGIONS and strategy in _RESOLVED and guarantee in _GUARANTEES):
            return Outcome(ref, shard, sl, region, strategy, guarantee)  # type: ignore[arg-type]
    where = f"subjects[{i}]."
    return Outcome(_str(s, "subject_ref", where), _int(s, "shard", where), _int(s, "slice", where),
                   _str(s, "region", where, choices=("update", "retrain")),
                   _str(s, "strategy", where, choices=STRATEGIES[1:]),
                   _str(s, "guarantee", where, choices=tuple(sorted(_GUARANTEES))))


def _model(obj: Any, key: str) -> Model:
    m = _get(obj, key, key)
    return Model(_int(m, "version", f"{key}."), _str(m, "digest", f"{key}."),
                 _strs(m, "shard_digests", f"{key}.", nonempty=True))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
