"""The cheaper append path writes the same bytes as before: each rewritten step checked, on random input,
against the code it replaced (kept here as the reference): normalisation, canonical bytes, the spliced
envelope, recorded_at formatting, the Merkle tree's batched extend and its root."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.ledger import canonical
from forgetd.ledger.canonical import canonical_bytes, canonical_string, envelope_bytes, normalize
from forgetd.ledger.errors import InvalidPayload
from forgetd.ledger.merkle import MerkleTree
from forgetd.ledger.prepare import format_time

_old_fast_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False, allow_nan=False
).encode


def old_canonical_bytes(value: Any) -> bytes:
    """canonical_bytes before the C encoder was built once."""
    try:
        fast = _old_fast_encode(value).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        fast = b"\x80"
    if fast.isascii():
        return fast
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise InvalidPayload(f"cannot canonicalise: {exc}") from exc


def old_normalize(value: object, where: str = "payload") -> Any:
    """normalize before its fast path: the full walk alone (canonical._normalize is that walk, unchanged)."""
    try:
        return canonical._normalize(value, where)
    except RecursionError:
        raise InvalidPayload(f"{where} is nested too deeply to canonicalise") from None


def old_envelope_bytes(*, seq: int, event_id: str, event_type: str, recorded_at: str, payload_bytes: bytes) -> bytes:
    return b"".join((
        b'{"event_id":', old_canonical_bytes(event_id), b',"payload":', payload_bytes,
        b',"recorded_at":', old_canonical_bytes(recorded_at), b',"seq":', b"%d" % seq,
        b',"type":', old_canonical_bytes(event_type), b',"v":', b"%d" % 1, b"}",
    ))


def old_format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("recorded_at needs a timezone-aware datetime")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outcome(fn: Any, *args: Any) -> Any:
    """What a call returns, or the type and message of what it raised: old and new must agree on both."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - compared
        return ("raised", type(exc), str(exc))


_TEXT = st.one_of(st.text(max_size=8), st.text(alphabet=st.characters(max_codepoint=127), max_size=8),
                  st.sampled_from(["Cafe\u0301", "\ud800", "a\"b\\c\n", "\x00\x1f", "é", "ﬁ"]))
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) - 2, 2**53 + 2), _TEXT,
                    st.floats(allow_nan=True), st.integers(-3, 3).map(float))
_KEYS = st.one_of(_TEXT, st.integers(0, 3))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=16)
_PAYLOADS = st.dictionaries(_KEYS, _VALUES, max_size=5)


@settings(max_examples=400, deadline=None)
@given(payload=_PAYLOADS)
def test_normalize_and_canonical_bytes_equal_the_old_ones(payload: dict[Any, Any]) -> None:
    old, new = outcome(old_normalize, payload), outcome(normalize, payload)
    assert new == old
    if old[0] == "ok":
        assert type(new[1]) is dict and new[1] is not payload  # a copy, as before
        assert outcome(canonical_bytes, new[1]) == outcome(old_canonical_bytes, old[1])


@settings(max_examples=300, deadline=None)
@given(value=_VALUES)
def test_canonical_bytes_of_any_value_equal_the_old_ones(value: Any) -> None:
    assert outcome(canonical_bytes, value) == outcome(old_canonical_bytes, value)


@settings(max_examples=300, deadline=None)
@given(event_id=_TEXT, event_type=_TEXT, recorded_at=_TEXT, seq=st.integers(1, 2**53), payload=_PAYLOADS)
def test_the_spliced_envelope_equals_the_old_one(event_id: str, event_type: str, recorded_at: str, seq: int,
                                                 payload: dict[Any, Any]) -> None:
    body = outcome(normalize, payload)
    payload_bytes = canonical_bytes(body[1]) if body[0] == "ok" else b"{}"
    for text in (event_id, event_type, recorded_at):
        assert outcome(canonical_string, text) == outcome(old_canonical_bytes, text)
    args = dict(seq=seq, event_id=event_id, event_type=event_type, recorded_at=recorded_at,
                payload_bytes=payload_bytes)
    assert outcome(lambda: envelope_bytes(**args)) == outcome(lambda: old_envelope_bytes(**args))


_ZONES = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                           max_value=timedelta(hours=23, minutes=59)))


@settings(max_examples=500, deadline=None)
@given(moment=st.one_of(st.datetimes(timezones=_ZONES), st.datetimes(), st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(1100, 1, 1), timezones=_ZONES)))
def test_format_time_equals_the_old_strftime(moment: datetime) -> None:
    assert outcome(format_time, moment) == outcome(old_format_time, moment)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.integers(0, 40), max_size=12))
def test_batched_extend_and_root_equal_one_leaf_at_a_time(chunks: list[int]) -> None:
    batched, single = MerkleTree(), MerkleTree()
    n = 0
    for size in chunks:
        leaves = [hashlib.sha256(b"%d" % (n + i)).digest() for i in range(size)]
        batched.extend(leaves)
        for leaf in leaves:
            single.append(leaf)
        n += size
        assert batched.levels == single.levels
        for k in range(n + 1):
            assert batched.root(k) == single.subtree(0, k)  # subtree is the RFC 9162 recursion itself
