"""What a verification finds: Problem (one finding, with its seq, expected and actual values), the bounded
list that collects them while the checks run, and row_problems, the slow and exact examination of one row.

Both the row pass (scan) and the file-level checks (verify) report here, so neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .canonical import ENVELOPE_KEYS, SCHEMA_VERSION, NonCanonical, check_canonical
from .merkle import HASH_SIZE

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z").fullmatch
MAX_PROBLEMS = 200  # listed in full; later ones are counted (first_bad_seq still sees them all)


class Problem(str):
    """One finding. It *is* its human-readable message (a str), with the parts kept as attributes:
    `seq` (None for file-level findings), `what`, `expected` and `actual`."""

    seq: int | None
    what: str
    expected: str | None
    actual: str | None

    def __new__(cls, seq: int | None, what: str, expected: object = None, actual: object = None) -> Problem:
        text = what if seq is None else f"seq {seq}: {what}"
        if expected is not None or actual is not None:
            text += f" (expected {_show(expected)}, actual {_show(actual)})"
        self = super().__new__(cls, text)
        self.seq = seq
        self.what = what
        self.expected = None if expected is None else _show(expected)
        self.actual = None if actual is None else _show(actual)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "what": self.what, "expected": self.expected, "actual": self.actual,
                "message": str(self)}


def _show(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() if len(value) <= 64 else f"{bytes(value[:48])!r}... ({len(value)} bytes)"
    if isinstance(value, str):
        return value if len(value) <= 120 else value[:117] + "..."
    return repr(value)


class Findings:
    """The problems found so far: the first MAX_PROBLEMS listed, the rest counted, the lowest seq kept."""

    def __init__(self) -> None:
        self.listed: list[Problem] = []
        self.omitted = 0
        self.first_bad: int | None = None

    @property
    def count(self) -> int:
        """Problems found, listed or not."""
        return len(self.listed) + self.omitted

    def add(self, seq: int | None, what: str, expected: object = None, actual: object = None) -> None:
        if seq is not None and (self.first_bad is None or seq < self.first_bad):
            self.first_bad = seq
        if len(self.listed) < MAX_PROBLEMS:
            self.listed.append(Problem(seq, what, expected, actual))
        else:
            self.omitted += 1


def is_hash(value: object) -> bool:
    return value.__class__ is bytes and len(value) == HASH_SIZE  # type: ignore[arg-type]


def row_problems(row: tuple[Any, ...], expected: int, found: Findings, *, check_leaf: bool = True) -> bytes | None:
    """Report everything wrong with one row; return its recomputed leaf hash when the envelope is bytes."""
    seq, event_id, etype, v, recorded_at, envelope, leaf_stored, chain_stored = row
    env_seq: Any = None
    obj: Any = None
    leaf: bytes | None = None
    problem_envelope: str | None = None
    if isinstance(envelope, bytes):
        leaf = hashlib.sha256(b"\x00" + envelope).digest()
        try:
            obj = check_canonical(envelope)
        except NonCanonical as exc:
            obj = _loose_parse(envelope)
            problem_envelope = f"envelope {exc}"
        if isinstance(obj, dict) and isinstance(obj.get("seq"), int) and not isinstance(obj.get("seq"), bool):
            env_seq = obj["seq"]
    else:
        problem_envelope = f"envelope is not a BLOB but {type(envelope).__name__}"
    # Which seq to name: the row's place in the sequence, unless its seq column is what was tampered with
    # (then the envelope still says where it belongs).
    name = expected
    if not (isinstance(seq, int) and seq >= expected):
        name = env_seq if isinstance(env_seq, int) and env_seq >= 1 else expected
    elif seq > expected:
        found.add(expected, f"missing: the next row has seq {seq}", f"seq {expected}", f"seq {seq}")
        name = seq
    if not isinstance(seq, int) or isinstance(seq, bool):
        found.add(name, "seq column is not an integer", "an integer", repr(seq))
    elif seq < expected:
        found.add(name, f"row out of place: seq column {seq} where seq {expected} or later was due",
                  f">= {expected}", seq)
    if problem_envelope:
        found.add(name, problem_envelope)
    if isinstance(obj, dict):
        if set(obj) != ENVELOPE_KEYS:
            found.add(name, "envelope keys are wrong", sorted(ENVELOPE_KEYS), sorted(obj))
        for key, column in (("seq", seq), ("event_id", event_id), ("type", etype), ("v", v),
                            ("recorded_at", recorded_at)):
            if key in obj and (obj[key] != column or type(obj[key]) is not type(column)):
                found.add(name, f"column {key} differs from the envelope's {key}", repr(obj[key]), repr(column))
    elif obj is not None or problem_envelope is None:
        found.add(name, "envelope is not a JSON object")
    if not (isinstance(v, int) and not isinstance(v, bool) and v == SCHEMA_VERSION):
        found.add(name, "unknown schema version", repr(SCHEMA_VERSION), repr(v))
    for what, value in (("event_id", event_id), ("type", etype)):
        if not isinstance(value, str) or not value:
            found.add(name, f"{what} must be a non-empty string", "a non-empty string", value)
    if not isinstance(recorded_at, str) or not RFC3339_UTC(recorded_at):
        found.add(name, "recorded_at is not an RFC 3339 UTC time", "YYYY-MM-DDTHH:MM:SS[.fff]Z", recorded_at)
    if check_leaf and leaf is not None and leaf != leaf_stored:
        found.add(name, "leaf hash differs from SHA-256(0x00 || envelope)", leaf, leaf_stored)
    if not is_hash(chain_stored):
        found.add(name, "chain hash is not 32 bytes", "32 bytes", chain_stored)
    return leaf


def _loose_parse(envelope: bytes) -> Any:
    try:
        return json.loads(envelope)
    except (ValueError, RecursionError):
        return None
