"""`to_jsonable`: any of the client's answer dataclasses as JSON-ready values (what `--json` prints, and the
receipt's JSON form); forgetd.client.types re-exports it beside the classes."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Any of the client's dataclasses as JSON-ready values: bytes become hex, enums their value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    return value
