"""Canonical envelopes: the restricted JSON domain, RFC 8785 bytes, and the verifier's fast re-canonicalisation."""

from __future__ import annotations

import enum

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.ledger import InvalidPayload
from forgetd.ledger.canonical import NonCanonical, canonical_bytes, check_canonical, envelope_bytes, fast_encode, normalize

MAX = 2**53 - 1

json_scalars = st.none() | st.booleans() | st.integers(-MAX, MAX) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=12)
ascii_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX, MAX) | ascii_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_text, inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"loss": 0.5}, "payload['loss'] = 0.5 is a float; ledger payloads allow no floats"),
        ({"x": [1, float("nan")]}, "payload['x'][1] = NaN is a float"),
        ({"x": float("inf")}, "payload['x'] = inf is a float"),
        ({"n": 2**53}, "payload['n'] = 9007199254740992 is outside the safe integer range"),
        ({"n": -(2**53)}, "payload['n'] = -9007199254740992 is outside the safe integer range"),
        ({1: "a"}, "payload has a non-string key 1"),
        ({"s": {1, 2}}, "payload['s'] has unsupported type set"),
        ({"b": b"raw"}, "payload['b'] has unsupported type bytes"),
        ({"s": "\ud800"}, "payload['s'] contains a lone surrogate"),
        ({"e\u0301": 1, "\u00e9": 2}, "payload has two keys equal to 'é' after NFC normalisation"),
    ],
)
def test_normalize_refuses_with_a_clear_message(payload: dict, message: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        normalize(payload)
    assert str(info.value).startswith(message)


def test_normalize_nfc_tuples_and_int_subclasses() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    out = normalize({"name": "Cafe\u0301", "t": (1, 2), "lvl": Level.HIGH, "ok": True, "none": None})
    assert out == {"name": "Caf\u00e9", "t": [1, 2], "lvl": 3, "ok": True, "none": None}
    assert type(out["lvl"]) is int
    assert canonical_bytes(out) == '{"lvl":3,"name":"Café","none":null,"ok":true,"t":[1,2]}'.encode()


@settings(max_examples=150, deadline=None)
@given(ascii_values)
def test_fast_encoder_equals_rfc8785_on_ascii(value: object) -> None:
    """The verifier's fast path relies on this: for ASCII input, stdlib's encoder produces RFC 8785 bytes."""
    assert fast_encode(value).encode() == rfc8785.dumps(value)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_canonical_bytes_pass_the_check(value: object) -> None:
    data = canonical_bytes(normalize(value))
    assert check_canonical(data) == normalize(value)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"a":1, "b":2}', "differs from its canonical form"),
        (b'{"b":1,"a":2}', "differs from its canonical form"),
        (b'{"a":"\\u0041"}', "differs from its canonical form"),
        (b'{"a":"\\/"}', "differs from its canonical form"),
        (b'{"a":"\\u00e9"}', "differs from its canonical form"),
        (b'{"a":-0}', "differs from its canonical form"),
        (b'{"a":1.5}', "contains a float (1.5)"),
        (b'{"a":1e3}', "contains a float (1e3)"),
        (b'{"a":NaN}', "contains NaN, which is not JSON"),
        (b'{"a":9007199254740993}', "integer 9007199254740993 is outside"),
        (b'{"a":1}x', "has trailing bytes"),
        (b' {"a":1}', "is not JSON"),
        (b'{"a":"\xff"}', "is not valid UTF-8"),
        ('{"a":"e\u0301"}'.encode(), "contains a string that is not NFC-normalised"),
        (b'{"a":1,"a":1}', "differs from its canonical form"),
    ],
)
def test_check_canonical_rejects(data: bytes, why: str) -> None:
    with pytest.raises(NonCanonical, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_canonical(data)



def test_key_order_is_utf16_not_code_points() -> None:
    """RFC 8785 sorts keys by UTF-16 code units: U+1F600 (D83D DE00) comes before U+FFFD; code points disagree."""
    value = {"\U0001F600": 1, "\ufffd": 2}
    canonical = canonical_bytes(value)
    assert canonical == '{"\U0001F600":1,"\ufffd":2}'.encode()
    assert check_canonical(canonical) == value
    with pytest.raises(NonCanonical, match="differs from its canonical form"):
        check_canonical('{"\ufffd":2,"\U0001F600":1}'.encode())


names = st.text(min_size=1, max_size=10).map(lambda s: normalize(s))


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(1, MAX), event_id=names, event_type=names, payload=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_spliced_envelope_equals_rfc8785_of_the_whole(seq: int, event_id: str, event_type: str, payload: dict) -> None:
    body = normalize(payload)
    whole = {"v": 1, "seq": seq, "event_id": event_id, "type": event_type, "recorded_at": "2025-01-02T03:04:05.000006Z",
             "payload": body}
    spliced = envelope_bytes(seq=seq, event_id=event_id, event_type=event_type,
                             recorded_at="2025-01-02T03:04:05.000006Z", payload_bytes=canonical_bytes(body))
    assert spliced == rfc8785.dumps(whole)
    assert canonical_bytes(body) == rfc8785.dumps(body)
