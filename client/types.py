"""What the client returns: frozen dataclasses built from the forgetd.v1 messages, and the strategy names.

Plain Python values only (tuples, ints, str, bytes), so a caller needs neither protobuf nor numpy to use
an answer, and `to_jsonable` can print any of them for `--json`. A Receipt's JSON form (what
`forgetd forget --json` prints) is read and written here too, beside the class it stands for.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path
from typing import Any

from forgetd.client.certificates import Certificate, GoldStandard, InfluenceStep, ShardBudget, newton_fields_from_json
from forgetd.client.errors import InvalidReceipt, InvalidStrategy
from forgetd.client.jsonable import to_jsonable
from forgetd.client.proofs import ConsistencyProof, HeadProofs, InclusionProof, LedgerHead
from forgetd.client.records import EncoderResidue, InputSchema
from forgetd.v1 import common_pb2, inference_service_pb2, unlearning_service_pb2

__all__ = [
    "STRATEGIES",
    "ConsistencyProof",
    "ForgetResult",
    "ForgetStatus",
    "HeadProofs",
    "InclusionProof",
    "LedgerEntry",
    "LedgerHead",
    "ModelConfig",
    "ModelInfo",
    "Prediction",
    "Receipt",
    "SampleOutcome",
    "guarantee_name",
    "load_receipt",
    "receipt_from_json",
    "receipt_to_json",
    "save_receipt",
    "strategy_name",
    "strategy_to_proto",
    "to_jsonable",
]

# Strategy names as the CLI and the client accept them, in the proto's order.
STRATEGIES: tuple[str, ...] = ("auto", "retrain", "sisa", "dpus", "hs", "ohs", "influence", "certified")

_STRATEGY_TO_PROTO: dict[str, common_pb2.Strategy] = {
    name: getattr(common_pb2, f"STRATEGY_{name.upper()}") for name in STRATEGIES
}
_PROTO_TO_STRATEGY: dict[int, str] = {v: k for k, v in _STRATEGY_TO_PROTO.items()}
_GUARANTEE_NAMES: dict[int, str] = {common_pb2.GUARANTEE_EXACT: "exact", common_pb2.GUARANTEE_CERTIFIED: "certified",
                                    common_pb2.GUARANTEE_APPROXIMATE: "approximate"}


def strategy_to_proto(name: str) -> common_pb2.Strategy:
    """The Strategy enum value for a name such as "hs" (case-insensitive); InvalidStrategy otherwise."""
    try:
        return _STRATEGY_TO_PROTO[name.lower()]
    except (KeyError, AttributeError):
        raise InvalidStrategy(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}") from None


def strategy_name(value: int) -> str:
    """The name of a Strategy enum value; "unspecified" for 0 (not set, e.g. while pending)."""
    return _PROTO_TO_STRATEGY.get(value, "unspecified")


def guarantee_name(value: int) -> str:
    """"exact", "certified", "approximate", or "unspecified" while a request is not applied."""
    return _GUARANTEE_NAMES.get(value, "unspecified")


class ForgetStatus(str, enum.Enum):
    """Where a forget request stands: durable but not applied yet, or applied (a new version is live)."""

    PENDING = "pending"
    APPLIED = "applied"

    @classmethod
    def from_proto(cls, value: int) -> ForgetStatus:
        # The server answers only PENDING or APPLIED; UNSPECIFIED would be a server bug, read as pending
        # because nothing proves the forget was applied.
        return cls.APPLIED if value == unlearning_service_pb2.FORGET_STATUS_APPLIED else cls.PENDING


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model's answer for a batch: one probability row and one label per input row."""

    probabilities: tuple[tuple[float, ...], ...]  # (rows, classes), each row sums to 1
    labels: tuple[int, ...]  # (rows,), the most probable class, ties to the lower index
    model_version: int  # the one version that answered the whole batch
    model_digest: str  # hex SHA-256 of that version's parameters

    @classmethod
    def from_proto(cls, msg: inference_service_pb2.PredictResponse) -> Prediction:
        flat, k = list(msg.probabilities), msg.classes
        rows = tuple(tuple(flat[i * k : (i + 1) * k]) for i in range(msg.rows))
        return cls(rows, tuple(msg.labels), msg.model_version, msg.model_digest)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The training configuration, fixed at training time and recorded in the ledger's genesis."""

    shards: int
    slices: int
    epochs: int
    batch_size: int
    learning_rate: float
    hidden_sizes: tuple[int, ...]
    budget_samples: int
    seed: int
    default_strategy: str  # what "auto" resolves to: "hs" or "ohs"
    aggregation: str  # "mean" or "vote"
    model: str = "mlp"  # the model family: "mlp" or "linear" (the one STRATEGY_CERTIFIED needs)
    epoch_schedule: str = ""  # "sisa" (E spread over the steps) or "per-step"; "" from an older server

    @classmethod
    def from_proto(cls, msg: inference_service_pb2.ModelConfig) -> ModelConfig:
        return cls(
            msg.shards, msg.slices, msg.epochs, msg.batch_size, msg.learning_rate, tuple(msg.hidden_sizes),
            msg.budget_samples, msg.seed, strategy_name(msg.default_strategy), msg.aggregation, msg.model or "mlp",
            msg.epoch_schedule)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The live model version as GetModel describes it."""

    version: int  # 0 after training, +1 per applied forget batch
    digest: str
    shard_digests: tuple[str, ...]
    config: ModelConfig
    threshold_m: int  # trailing slices that form the retrain region
    training_accuracy: float  # fraction in [0, 1]
    forgotten_count: int
    num_features: int
    num_classes: int
    device: str  # e.g. "cpu" or "cuda:0"
    head_public_key: str  # hex Ed25519 key that signs ledger heads
    ledger_seq: int  # the ledger entry that published this version
    # The signed-note verifier key of the head key under the checkpoint origin ("<origin>+<key id>+<key>"): what
    # a C2SP tool checks LedgerHead.checkpoint with. "" from a server from before checkpoints.
    verifier_key: str = ""
    checkpoint_origin: str = ""  # the origin line of the ledger's checkpoints, committed in genesis
    input_schema: InputSchema | None = None  # the raw rows it takes (Client.predict_records); None: an older server
    supported_strategies: tuple[str, ...] = ()  # what Forget accepts for this model family; () from an older server
    gold: GoldStandard | None = None  # the daemon's last gold-standard check; None before one (or without --gold-every)
    certified_budget: tuple[ShardBudget, ...] = ()  # the linear family's, per shard; () for an MLP (or older server)

    @classmethod
    def from_proto(cls, msg: inference_service_pb2.GetModelResponse) -> ModelInfo:
        return cls(
            msg.version, msg.digest, tuple(msg.shard_digests), ModelConfig.from_proto(msg.config),
            msg.threshold_m, msg.training_accuracy, msg.forgotten_count, msg.num_features, msg.num_classes,
            msg.device, msg.head_public_key, msg.ledger_seq, msg.verifier_key, msg.checkpoint_origin,
            InputSchema.from_proto(msg.input_schema) if msg.HasField("input_schema") else None,
            tuple(map(strategy_name, msg.supported_strategies)),
            GoldStandard.from_proto(msg.gold) if msg.HasField("gold") else None,
            tuple(map(ShardBudget.from_proto, msg.certified_budget)))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One ledger entry exactly as stored (the envelope bytes are what was hashed)."""

    seq: int
    event_id: str
    type: str  # "genesis", "forget.requested", "forget.applied", ...
    schema_version: int
    recorded_at: str  # RFC 3339 UTC
    envelope: bytes  # RFC 8785 canonical JSON
    leaf_hash: bytes
    chain_hash: bytes

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.LedgerEntry) -> LedgerEntry:
        return cls(
            msg.seq, msg.event_id, msg.type, msg.schema_version, msg.recorded_at, msg.envelope,
            msg.leaf_hash, msg.chain_hash,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SampleOutcome:
    """What happened to one requested sample."""

    sample_id: str
    subject_ref: str  # hex HMAC of the id: the only form the ledger holds
    shard: int
    slice: int  # 1-based
    strategy: str  # the strategy actually applied; "unspecified" while pending
    guarantee: str  # "exact", "approximate", "unspecified" while pending
    applied_seq: int  # the forget.applied entry that removed it (maybe an earlier request's); 0 while pending

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.SampleOutcome) -> SampleOutcome:
        return cls(
            msg.sample_id, msg.subject_ref, msg.shard, msg.slice, strategy_name(msg.strategy),
            guarantee_name(msg.guarantee), msg.applied_seq,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ForgetResult:
    """The applied forget batch that carried a request."""

    model_version: int
    model_digest: str
    shard_digests: tuple[str, ...]
    strategy: str  # resolved, never "auto"
    guarantee: str  # "exact" only if every sample's is
    residue_steps: int
    samples_read: int
    apply_micros: int
    encoder_residue: tuple[EncoderResidue, ...] = ()  # categories left without a training row (APPROXIMATE)
    certificate: Certificate | None = None  # CERTIFIED: epsilon, delta and the budget each shard spent
    influence: tuple[InfluenceStep, ...] = ()  # INFLUENCE: per shard, what the damped Newton step did

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.ForgetResult) -> ForgetResult:
        return cls(
            msg.model_version, msg.model_digest, tuple(msg.shard_digests), strategy_name(msg.strategy),
            guarantee_name(msg.guarantee), msg.residue_steps, msg.samples_read, msg.apply_micros,
            tuple(map(EncoderResidue.from_proto, msg.encoder_residue)),
            Certificate.from_proto(msg.certificate) if msg.HasField("certificate") else None,
            tuple(map(InfluenceStep.from_proto, msg.influence)),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Receipt:
    """A forget request's state and its proof: what Forget answers and GetForgetRequest brings up to date.

    Keep it: `requested_seq`/`requested_leaf_hash` and `head` let an auditor show later that the ledger
    still holds the request (`forgetd verify`).
    """

    request_id: str
    status: ForgetStatus
    requested_seq: int
    requested_leaf_hash: bytes
    applied_seq: int  # 0 while pending
    applied_leaf_hash: bytes  # empty while pending
    head: LedgerHead | None
    requested_proof: InclusionProof | None
    applied_proof: InclusionProof | None  # None while pending
    result: ForgetResult | None  # None while pending
    samples: tuple[SampleOutcome, ...]  # in request order
    # True once a head holding the receipt's entries was cosigned by the server's witness quorum; `head` is then
    # that head and head.checkpoint carries the cosignatures. Always False on a server without witnesses.
    published: bool = False
    unpublished_reason: str = ""  # why not published yet, in words; "" when published or without witnesses

    @property
    def applied(self) -> bool:
        return self.status is ForgetStatus.APPLIED

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the receipt as JSON, the form `forgetd forget --json` prints."""
        save_receipt(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Receipt:
        """Read a receipt saved by `save` (or printed by `forgetd forget --json`); InvalidReceipt if malformed."""
        return load_receipt(path)

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.ForgetResponse) -> Receipt:
        r = msg.receipt
        return cls(
            request_id=msg.request_id or r.request_id,
            status=ForgetStatus.from_proto(msg.status),
            requested_seq=r.requested_seq,
            requested_leaf_hash=r.requested_leaf_hash,
            applied_seq=r.applied_seq,
            applied_leaf_hash=r.applied_leaf_hash,
            head=LedgerHead.from_proto(r.head) if r.HasField("head") else None,
            requested_proof=InclusionProof.from_proto(r.requested_proof) if r.HasField("requested_proof") else None,
            applied_proof=InclusionProof.from_proto(r.applied_proof) if r.HasField("applied_proof") else None,
            result=ForgetResult.from_proto(msg.result) if msg.HasField("result") else None,
            samples=tuple(map(SampleOutcome.from_proto, msg.samples)),
            published=r.published,
            unpublished_reason=r.unpublished_reason,
        )


# -------------------------------------------------------------------------------------------- receipt JSON


def receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    """The receipt as JSON-ready values (bytes as hex): the form `forgetd forget --json` prints."""
    return to_jsonable(receipt)  # type: ignore[no-any-return]


def save_receipt(receipt: Receipt, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(receipt_to_json(receipt), indent=2, sort_keys=True) + "\n")


def load_receipt(path: str | os.PathLike[str]) -> Receipt:
    """Read a receipt file; InvalidReceipt names what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidReceipt(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise InvalidReceipt(f"{path}: not JSON ({exc})") from None
    return receipt_from_json(data)


def _hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidReceipt(f"receipt field {name!r} must be a hex string, got {value!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidReceipt(f"receipt field {name!r} is not hexadecimal") from None


def _int(data: dict[str, Any], key: str, where: str = "") -> int:
    value = _get(data, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidReceipt(f"receipt field {where + key!r} must be a non-negative integer, got {value!r}")
    return value


def _get(data: Any, key: str, where: str = "") -> Any:
    if not isinstance(data, dict):
        raise InvalidReceipt(f"receipt field {where.rstrip('.') or 'receipt'!r} must be an object")
    if key not in data:
        raise InvalidReceipt(f"receipt field {where + key!r} is missing")
    return data[key]


def _proof(data: Any, where: str) -> InclusionProof | None:
    if data is None:
        return None
    hashes = _get(data, "hashes", where)
    if not isinstance(hashes, list):
        raise InvalidReceipt(f"receipt field {where + 'hashes'!r} must be a list of hex strings")
    return InclusionProof(_int(data, "seq", where), _int(data, "tree_size", where),
                          tuple(_hex(h, where + "hashes") for h in hashes))


def receipt_from_json(data: Any) -> Receipt:
    """The Receipt a JSON object describes (receipt_to_json's inverse)."""
    head_data = _get(data, "head")
    head = None
    if head_data is not None:
        head = LedgerHead(_int(head_data, "size", "head."), _hex(_get(head_data, "chain_hash", "head."), "head.chain_hash"),
                          _hex(_get(head_data, "merkle_root", "head."), "head.merkle_root"),
                          _hex(_get(head_data, "signature", "head."), "head.signature"),
                          _hex(_get(head_data, "public_key", "head."), "head.public_key"),
                          _optional(head_data, "checkpoint", "", "head."))  # absent before checkpoints
    result_data = data.get("result")
    result = None
    if result_data is not None:
        try:
            result = ForgetResult(**{**result_data, "shard_digests": tuple(result_data["shard_digests"]), "encoder_residue":
                                     tuple(EncoderResidue(**r) for r in result_data.get("encoder_residue", ())),
                                     **newton_fields_from_json(result_data)})
        except (TypeError, KeyError) as exc:
            raise InvalidReceipt(f"receipt field 'result' is malformed ({exc})") from None
    try:
        samples = tuple(SampleOutcome(**s) for s in data.get("samples", []))
        status = ForgetStatus(_get(data, "status"))
    except (TypeError, ValueError) as exc:
        raise InvalidReceipt(f"receipt field 'samples' or 'status' is malformed ({exc})") from None
    request_id = _get(data, "request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidReceipt(f"receipt field 'request_id' must be a non-empty string, got {request_id!r}")
    return Receipt(
        request_id=request_id,
        status=status,
        requested_seq=_int(data, "requested_seq"),
        requested_leaf_hash=_hex(_get(data, "requested_leaf_hash"), "requested_leaf_hash"),
        applied_seq=_int(data, "applied_seq"),
        applied_leaf_hash=_hex(_get(data, "applied_leaf_hash"), "applied_leaf_hash"),
        head=head,
        requested_proof=_proof(data.get("requested_proof"), "requested_proof."),
        applied_proof=_proof(data.get("applied_proof"), "applied_proof."),
        result=result,
        samples=samples,
        published=_optional(data, "published", False),  # both absent in receipts from before witnesses
        unpublished_reason=_optional(data, "unpublished_reason", ""),
    )


def _optional(data: dict[str, Any], key: str, default: Any, where: str = "") -> Any:
    value = data.get(key, default)
    if type(value) is not type(default):
        raise InvalidReceipt(f"receipt field {where + key!r} must be a {type(default).__name__}, got {value!r}")
    return value
