"""The ledger's batched append, the ground group commit stands on: one append_many of N events writes exactly
the bytes N single appends write (same seqs, envelopes, leaf and chain hashes, heads), idempotency included."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetd.ledger import IdempotencyConflict, Ledger, verify_ledger
from forgetd.ledger.schema import COLUMNS, TABLE

T0 = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=8))
_PAYLOADS = st.dictionaries(st.text(max_size=6), st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)), max_size=4)
_EVENTS = st.lists(st.tuples(st.sampled_from(["forget.requested", "forget.applied", "audit.gold"]), _PAYLOADS,
                             st.one_of(st.none(), st.sampled_from(["r-1", "r-2", "r-3", "r-4"]))),
                   min_size=1, max_size=12)


def _ticking_clock() -> Any:
    """A clock that moves one microsecond per reading, the same for both ledgers: recorded_at is in the bytes."""
    ticks = itertools.count()
    return lambda: T0 + timedelta(microseconds=next(ticks))


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq").fetchall()


def _unique_ids(events: list[tuple[str, dict[str, Any], str | None]]) -> list[tuple[str, dict[str, Any], str]]:
    """Events whose repeated ids repeat the first event under that id exactly (a conflict is tested apart), and
    whose missing ids are filled in, the same for both ledgers (a fresh UUID would differ between them)."""
    first: dict[str, tuple[str, dict[str, Any], str]] = {}
    out = []
    for i, (etype, payload, eid) in enumerate(events):
        key = eid if eid is not None else f"fresh-{i}"
        out.append(first.setdefault(key, (etype, payload, key)))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_EVENTS, before=st.integers(0, 3))
def test_append_many_writes_the_bytes_of_n_single_appends(events: list[tuple[str, dict[str, Any], str | None]],
                                                           before: int) -> None:
    batch = _unique_ids(events)
    with tempfile.TemporaryDirectory() as tmp:
        singles_path, many_path = Path(tmp) / "singles.db", Path(tmp) / "many.db"
        with Ledger(singles_path, clock=_ticking_clock()) as singles, Ledger(many_path, clock=_ticking_clock()) as many:
            for i in range(before):  # the batch continues a chain already there
                singles.append("genesis", {"i": i}, event_id=f"g-{i}")
                many.append("genesis", {"i": i}, event_id=f"g-{i}")
            one_by_one = [singles.append(t, p, event_id=e) for t, p, e in batch]
            together = many.append_many(batch)
            assert together == one_by_one
            assert many.head() == singles.head()
        assert _rows(many_path) == _rows(singles_path)
        assert verify_ledger(many_path).ok


def test_a_conflict_in_a_batch_writes_nothing_of_it(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.append("forget.requested", {"n": 1}, event_id="r-1")
        try:
            ledger.append_many([("forget.requested", {"n": 2}, "r-2"), ("forget.requested", {"n": 9}, "r-1")])
        except IdempotencyConflict as exc:
            assert exc.event_id == "r-1" and exc.seq == 1
        else:
            raise AssertionError("a reused event id with another payload was accepted")
        assert ledger.size == 1
        assert [e.seq for e in ledger.append_many([("forget.requested", {"n": 2}, "r-2")])] == [2]
