"""Canonical bytes for ledger envelopes: RFC 8785 (JCS) over a restricted JSON domain.

The domain is what survives a round trip through any JSON implementation unchanged: objects with string
keys, arrays, strings (NFC-normalised, valid UTF-8), integers in [-(2^53-1), 2^53-1], true, false, null.
Floats (NaN and infinities included) are refused: their canonical form depends on float formatting that
other verifiers may not reproduce bit for bit, and ledger events have no need for them.

`rfc8785` is the reference. Appends and verification both need speed (an append should cost little more
than its fsync; an auditor re-canonicalises 100k envelopes a second), so ASCII goes through a fast path:
the standard library's C encoder with sorted keys and compact separators produces exactly the RFC 8785
bytes for this domain (same escapes, same integer form; key order differs from UTF-16 order only for
non-ASCII keys). Whatever is not ASCII is encoded and checked with `rfc8785` itself, plus an NFC check of
every string when verifying. tests/test_ledger_canonical.py pins the equivalence with hypothesis.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import rfc8785

from .errors import InvalidPayload

SCHEMA_VERSION = 1
MAX_SAFE_INT = 2**53 - 1
ENVELOPE_KEYS = frozenset({"v", "seq", "event_id", "type", "recorded_at", "payload"})

JSONValue = Any  # dict[str, JSONValue] | list[JSONValue] | str | int | bool | None

# The standard library's encoder configured to match RFC 8785 on ASCII input (see the module docstring).
fast_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False, allow_nan=False
).encode


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# The C encoder fast_encode builds on every call, built once: the same bytes without fast_encode's two Python
# frames. Arguments: markers (None: no circular check), default, string encoder, indent, key and item
# separators, sort_keys, skipkeys, allow_nan -- fast_encode's settings.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode = None if _c_make_encoder is None else _c_make_encoder(
    None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False)


def _encode(value: JSONValue) -> str:
    if _c_encode is None:  # pragma: no cover - an interpreter without the C accelerator
        return fast_encode(value)
    return "".join(_c_encode(value, 0))


class NonCanonical(ValueError):
    """Stored envelope bytes are not the canonical form of the JSON they contain."""


def normalize(value: object, where: str = "payload") -> JSONValue:
    """Return `value` as plain JSON types with every string NFC-normalised; raise InvalidPayload otherwise.

    `where` names the location in error messages (payload["a"][3]), so a caller sees which field to fix.
    """
    if type(value) is dict:
        try:
            return _plain_copy(value)  # the common case, without building error locations
        except (_NotPlain, RecursionError):
            pass  # something to normalise or refuse: the full walk below decides, naming where
    try:
        return _normalize(value, where)
    except RecursionError:
        raise InvalidPayload(f"{where} is nested too deeply to canonicalise") from None


class _NotPlain(Exception):
    """Raised by _plain_copy at the first value it does not take as it is."""


def _plain_copy(value: object) -> JSONValue:
    """A copy of a dict or list made only of dicts, lists, ASCII str keys and strings, safe ints, bools and None:
    exactly what _normalize returns for it (ASCII is NFC, so no two keys can collide). _NotPlain otherwise."""
    kind = type(value)
    if kind is dict:
        out: dict[str, JSONValue] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not key.isascii():
                raise _NotPlain
            out[key] = _plain_item(item)
        return out
    if kind is list:
        return [_plain_item(item) for item in value]  # type: ignore[attr-defined]
    raise _NotPlain


def _plain_item(item: object) -> JSONValue:
    kind = type(item)
    if kind is str:
        if item.isascii():  # type: ignore[attr-defined]
            return item
        raise _NotPlain
    if kind is int:
        if -MAX_SAFE_INT <= item <= MAX_SAFE_INT:  # type: ignore[operator]
            return item
        raise _NotPlain
    if item is None or kind is bool:
        return item
    return _plain_copy(item)


def _normalize(value: object, where: str) -> JSONValue:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return _nfc(value, where)
    if isinstance(value, numbers.Integral):  # int, IntEnum, numpy integers
        n = int(value)
        if not -MAX_SAFE_INT <= n <= MAX_SAFE_INT:
            raise InvalidPayload(
                f"{where} = {n} is outside the safe integer range +-(2^53-1); store it as a string"
            )
        return n
    if isinstance(value, float):
        shown = "NaN" if math.isnan(value) else repr(value)
        raise InvalidPayload(
            f"{where} = {shown} is a float; ledger payloads allow no floats "
            "(use an integer in fixed units, or a string)"
        )
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidPayload(f"{where} has a non-string key {key!r}; JSON object keys must be strings")
            nkey = key if _plain(key) else _nfc(key, f"{where} key {key!r}")
            if nkey in out:
                raise InvalidPayload(f"{where} has two keys equal to {nkey!r} after NFC normalisation")
            out[nkey] = item if _plain(item) else _normalize(item, f"{where}[{nkey!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [item if _plain(item) else _normalize(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InvalidPayload(
        f"{where} has unsupported type {type(value).__name__}; "
        "use dict, list, str, int, bool or None"
    )


def _plain(value: object) -> bool:
    """An ASCII str or a safe int: already what _normalize returns for it. Most of a payload is such leaves;
    taking them as they are skips building the location an error message would name."""
    kind = type(value)
    if kind is str:
        return value.isascii()  # type: ignore[attr-defined]  # ASCII is NFC and holds no surrogate
    return kind is int and -MAX_SAFE_INT <= value <= MAX_SAFE_INT  # type: ignore[operator]


def _nfc(text: str, where: str) -> str:
    out = unicodedata.normalize("NFC", text)
    if type(out) is not str:
        out = str.__str__(out)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload(f"{where} contains a lone surrogate; strings must be valid Unicode") from None
    return out


def canonical_bytes(value: JSONValue) -> bytes:
    """RFC 8785 bytes of an already-normalised value.

    The C encoder's output is taken when it is ASCII (then it equals RFC 8785 byte for byte, see the module
    docstring); anything else is encoded by `rfc8785` itself."""
    try:
        fast = _encode(value).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        fast = b"\x80"  # not ASCII: let rfc8785 decide, and say why if it refuses
    if fast.isascii():
        return fast
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:  # normalize() should have caught it; say so clearly
        raise InvalidPayload(f"cannot canonicalise: {exc}") from exc


def canonical_string(text: str) -> bytes:
    """canonical_bytes of a string, without the general encoder's dispatch (an envelope splices three)."""
    fast = json.encoder.encode_basestring(text).encode("utf-8", "surrogatepass")
    if fast.isascii():
        return fast
    return canonical_bytes(text)


def envelope_bytes(
    *, seq: int, event_id: str, event_type: str, recorded_at: str, payload_bytes: bytes, v: int = SCHEMA_VERSION
) -> bytes:
    """The stored envelope {v, seq, event_id, type, recorded_at, payload} as canonical bytes.

    Spliced from canonical parts rather than re-encoding the payload: RFC 8785 puts the six ASCII keys in
    this order (event_id < payload < recorded_at < seq < type < v), and `payload_bytes` are the payload's
    canonical bytes. tests/test_ledger_canonical.py checks the result against rfc8785.dumps of the whole."""
    return spliced_envelope(seq, canonical_string(event_id), canonical_string(event_type),
                            canonical_string(recorded_at), payload_bytes, v)


def spliced_envelope(seq: int, event_id_json: bytes, event_type_json: bytes, recorded_at_json: bytes,
                     payload_bytes: bytes, v: int = SCHEMA_VERSION) -> bytes:
    """envelope_bytes from parts already canonical (canonical_string of each string): the ledger's append
    encodes an event's id and type once, whatever else it does with them."""
    return b'{"event_id":%b,"payload":%b,"recorded_at":%b,"seq":%d,"type":%b,"v":%d}' % (
        event_id_json, payload_bytes, recorded_at_json, seq, event_type_json, v)


# --- reading and verification ------------------------------------------------------------------------------


def _reject_float(literal: str) -> Any:
    raise NonCanonical(f"contains a float ({literal}); ledger envelopes allow no floats")


def _reject_constant(literal: str) -> Any:
    raise NonCanonical(f"contains {literal}, which is not JSON")


def _safe_int(literal: str) -> int:
    n = int(literal)
    if -MAX_SAFE_INT <= n <= MAX_SAFE_INT:
        return n
    raise NonCanonical(f"integer {literal} is outside +-(2^53-1)")


# A strict decoder: floats, NaN/Infinity and unsafe integers fail while parsing, in C except for the hooks.
_DECODER = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant, parse_int=_safe_int)
raw_decode = _DECODER.raw_decode
# For the verifier's hot loop: the C scanner behind raw_decode, (text, index) -> (value, end), raising
# StopIteration where nothing parses. It parses integers in C without the range hook; the caller screens a
# whole chunk for long digit runs (LONG_DIGITS) and re-checks only rows that have one with check_canonical.
scan_once = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant).scan_once  # type: ignore[attr-defined]
LONG_DIGITS = re.compile(rb"[0-9]{16}")


def check_canonical(data: bytes) -> dict[str, JSONValue]:
    """Parse stored envelope bytes and return the object; raise NonCanonical unless they are canonical.

    Canonical means: valid UTF-8, a JSON object, no floats, safe integers, NFC strings, and re-canonicalising
    the parsed value gives back exactly `data`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NonCanonical(f"is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj, end = raw_decode(text)
    except json.JSONDecodeError as exc:
        raise NonCanonical(f"is not JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise NonCanonical("is nested too deeply") from None
    if end != len(text):
        raise NonCanonical(f"has trailing bytes after the JSON value (at char {end})")
    try:
        if data.isascii():
            again = fast_encode(obj).encode("utf-8")
        else:
            _check_nfc(obj)
            again = rfc8785.dumps(obj)
    except UnicodeEncodeError:
        raise NonCanonical("contains a lone surrogate") from None
    except rfc8785.CanonicalizationError as exc:
        raise NonCanonical(f"cannot be canonicalised ({exc})") from None
    except RecursionError:
        raise NonCanonical("is nested too deeply") from None
    if again != data:
        raise NonCanonical(f"differs from its canonical form {_first_difference(data, again)}")
    return obj  # type: ignore[no-any-return]


def _check_nfc(value: JSONValue) -> None:
    if isinstance(value, str):
        if not unicodedata.is_normalized("NFC", value):
            raise NonCanonical(f"contains a string that is not NFC-normalised: {value!r}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nfc(key)
            _check_nfc(item)
    elif isinstance(value, list):
        for item in value:
            _check_nfc(item)


def _first_difference(stored: bytes, canonical: bytes) -> str:
    i = next((k for k, (a, b) in enumerate(zip(stored, canonical)) if a != b), min(len(stored), len(canonical)))
    return f"at byte {i}: stored {stored[i:i + 24]!r}, canonical {canonical[i:i + 24]!r}"
