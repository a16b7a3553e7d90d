"""What the replay compares beyond routing and digests: the Newton strategies' recorded figures (forget.applied's
`influence` and `certified` fields, engine/newton.py), so a ledger whose budget arithmetic was altered, or a
CERTIFIED retrain it hides or invents, is caught. The figures are strings (repr of a float) and flags, made
deterministically on one device type, so the replay's own must be equal to them, field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["first_difference"]


def first_difference(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(where, recorded, replayed) of the first field where the two differ, in a fixed order; None if equal."""
    for key in sorted(set(recorded) | set(replayed)):
        found = _walk(recorded.get(key), replayed.get(key), key)
        if found is not None:
            return found
    return None


def _walk(want: Any, have: Any, path: str) -> tuple[str, str, str] | None:
    if isinstance(want, Mapping) and isinstance(have, Mapping):
        for key in sorted(set(want) | set(have)):
            found = _walk(want.get(key), have.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for i, (w, h) in enumerate(zip(want, have)):
            found = _walk(w, h, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if want != have:
        return path, _shown(want), _shown(have)
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
