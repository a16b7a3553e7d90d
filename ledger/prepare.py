"""One append's arguments made ready before its transaction starts: validated, normalised, their canonical
bytes computed once (the payload's, the event type's, the event id's), and the time an entry records.

Everything here happens outside the ledger's write transaction, so bad input writes nothing and a group
commit's leader holds the write lock only for hashing and SQLite.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .canonical import canonical_bytes, canonical_string, normalize
from .errors import InvalidEventId, InvalidEventType, InvalidPayload, LedgerError

__all__ = ["MAX_NAME_LENGTH", "Clock", "Prepared", "check_name", "format_time", "prepare", "utc_now"]

MAX_NAME_LENGTH = 256

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z: 2025-01-02T03:04:05.000006Z."""
    if moment.tzinfo is None:
        raise ValueError("recorded_at needs a timezone-aware datetime")
    utc = moment.astimezone(timezone.utc)
    if utc.year < 1000:  # strftime's %Y pads to four digits on some platforms only: keep its text there
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # That strftime's text (an entry's bytes hold it), without strftime's format parsing.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond)


def check_name(value: object, what: str, error: type[LedgerError]) -> str:
    if type(value) is str and value.isascii() and 0 < len(value) <= MAX_NAME_LENGTH:
        return value  # ASCII is NFC already: what normalize would return
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__} {value!r}")
    text = normalize(value, what)
    if not text or len(text) > MAX_NAME_LENGTH:
        raise error(f"{what} must be 1..{MAX_NAME_LENGTH} characters, got {len(text)}")
    return text  # type: ignore[no-any-return]


# One append's arguments, validated and normalised: type, event id, payload, the payload's canonical bytes,
# and the canonical bytes of the type and of the id (what the envelope splices in).
Prepared = tuple[str, str, Any, bytes, bytes, bytes]


def prepare(event_type: object, payload: object, event_id: object) -> Prepared:
    """Validate and normalise one append's arguments before any transaction starts (bad input writes nothing)."""
    etype = check_name(event_type, "event type", InvalidEventType)
    eid = str(uuid.uuid4()) if event_id is None else check_name(event_id, "event id", InvalidEventId)
    if not isinstance(payload, dict):
        raise InvalidPayload(f"payload must be a dict (a JSON object), got {type(payload).__name__}")
    body = normalize(payload, "payload")
    return etype, eid, body, canonical_bytes(body), _type_json(etype), canonical_string(eid)


_TYPE_JSON: dict[str, bytes] = {}  # event types are few: each one's canonical bytes, computed once


def _type_json(etype: str) -> bytes:
    found = _TYPE_JSON.get(etype)
    if found is None:
        found = canonical_string(etype)
        if len(_TYPE_JSON) < 1024:  # a bound, should a caller make up types
            _TYPE_JSON[etype] = found
    return found
