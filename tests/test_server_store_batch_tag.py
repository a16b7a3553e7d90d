"""The batch tag is part of the store format: its text must stay byte for byte what forgetd has always
written in CURRENT.json, since recovery and the replaying auditor read stores written by earlier daemons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetd.ledger import subject_ref
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import StoreError
from forgetd.server.store.batch_tag import BatchTag, TaggedSubject

REF = "ab" * 32
TAG = BatchTag(
    request_ids=("r1", "r\u00e9"),
    strategy="auto",
    resolved_strategy="hs",
    subjects=(TaggedSubject(REF, 0, 2, "update", "dpus", "approximate"),
              TaggedSubject("cd" * 32, 1, 9, "retrain", "sisa", "exact")),
    samples_read=1200,
    device="cpu",
)
# Written out by hand from the format (json.dumps with sorted keys and its default separators and escapes).
TAG_TEXT = (
    '{"device": "cpu", "format": "forgetd.batch.v1", "request_ids": ["r1", "r\\u00e9"], "residue_steps": 0, '
    '"resolved_strategy": "hs", "samples_read": 1200, "strategy": "auto", "subjects": ['
    '{"guarantee": "approximate", "region": "update", "shard": 0, "slice": 2, "strategy": "dpus", '
    f'"subject_ref": "{REF}"}}, '
    '{"guarantee": "exact", "region": "retrain", "shard": 1, "slice": 9, "strategy": "sisa", '
    f'"subject_ref": "{"cd" * 32}"}}'
    ']}'
)


def test_the_tag_text_is_the_store_formats_bytes() -> None:
    assert TAG.to_json() == TAG_TEXT
    assert BatchTag.from_json(TAG_TEXT) == TAG


@pytest.mark.parametrize("text", [None, "", "req-9", "[1, 2]", '{"format": "forgetd.batch.v0"}', "{not json"])
def test_text_that_is_no_batch_tag_reads_as_none(text: str | None) -> None:
    assert BatchTag.from_json(text) is None


@pytest.mark.parametrize("damage", [
    lambda t: t.pop("request_ids"),
    lambda t: t["subjects"][0].pop("shard"),
    lambda t: t.update(samples_read="many"),
])
def test_a_damaged_batch_tag_is_a_store_error(damage) -> None:
    data = json.loads(TAG_TEXT)
    damage(data)
    with pytest.raises(StoreError, match="batch tag is damaged"):
        BatchTag.from_json(json.dumps(data))


def test_the_engine_writes_the_tag_the_worker_used_to_build_from_a_plan(store: Path) -> None:
    # The daemon's worker once planned the batch first and wrote this dict itself; the engine now makes the
    # same text from the one plan it applies.
    with Engine.open(store, device="cpu") as engine:
        ids = engine.sample_ids()[3:6]
        plan = engine.plan(ids, "auto")
        legacy = json.dumps({
            "format": "forgetd.batch.v1",
            "request_ids": ["a", "b"],
            "strategy": "auto",
            "resolved_strategy": plan.strategy,
            "subjects": [{"subject_ref": subject_ref(engine.subject_key, s.sample_id), "shard": s.shard,
                          "slice": s.slice, "region": s.region, "strategy": s.strategy,
                          "guarantee": s.guarantee.lower()} for s in plan.samples],
            "residue_steps": 0,
            "samples_read": plan.estimated_samples_read,
            "device": "cpu",
        }, sort_keys=True)
        report = engine.forget(ids, "auto", request_ids=["a", "b"])
        assert report.tag is not None and report.tag.to_json() == legacy
        assert json.loads((store / "CURRENT.json").read_text())["tag"] == legacy
        assert engine.live_batch == report.tag
