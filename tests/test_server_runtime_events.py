"""The daemon's ledger events: builders, parsers (each malformed field named) and the fold's rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.errors import ForgetdError, InvalidEvent
from forgetd.server.runtime import events
from forgetd.server.runtime.events import LedgerFold, MalformedEvent, ModelState, SubjectOutcome
from forgetd.server.vocabulary import CONCRETE_STRATEGIES, GUARANTEES, REGIONS

REF_A, REF_B, REF_C = "aa" * 32, "bb" * 32, "cc" * 32
V0 = ModelState(0, "00" * 32, ("00" * 32,))
V1 = ModelState(1, "11" * 32, ("11" * 32,))


def outcome(ref: str, strategy: str = "dpus", guarantee: str = "approximate") -> SubjectOutcome:
    return SubjectOutcome(ref, shard=0, slice=1, region="update", strategy=strategy, guarantee=guarantee)


def applied(rids: list[str], subjects: list[SubjectOutcome], model: ModelState = V1) -> dict:
    return events.applied_payload(request_ids=rids, strategy="auto", resolved_strategy="hs", subjects=subjects,
                                  model=model, residue_steps=1, samples_read=2, apply_micros=3, queued_micros=4)


def fold(*items: tuple[str, dict]) -> LedgerFold:
    f = LedgerFold()
    f.add(1, events.GENESIS, b"g", events.genesis_payload({"config": {}}, "ab" * 32, V0))
    for seq, (etype, payload) in enumerate(items, start=2):
        # A JSON round trip, as the ledger stores them: no tuples, no Python-only values.
        f.add(seq, etype, bytes([seq]), json.loads(json.dumps(payload)))
    return f


def test_a_request_then_its_batch_folds_to_applied_with_each_subject_pointing_at_the_batch() -> None:
    f = fold(
        (events.FORGET_REQUESTED, events.requested_payload("r1", [REF_A, REF_B], "auto", "2026-01-01T00:00:00Z")),
        (events.FORGET_APPLIED, applied(["r1"], [outcome(REF_A), outcome(REF_B, "sisa", "exact")])),
    )
    assert f.pending() == []
    batch = f.applied_by_request["r1"]
    assert batch.seq == 3 and batch.guarantee == "approximate" and batch.model == V1
    assert f.forgotten[REF_B][0] is batch and f.forgotten[REF_B][1].guarantee == "exact"
    assert f.live_model() == V1


def test_requests_without_their_batch_are_pending_in_ledger_order() -> None:
    f = fold(
        (events.FORGET_REQUESTED, events.requested_payload("r2", [REF_A], "sisa", "t")),
        (events.FORGET_REQUESTED, events.requested_payload("r1", [REF_B], "dpus", "t")),
        (events.FORGET_APPLIED, applied(["r1"], [outcome(REF_B)])),
        (events.FORGET_REQUESTED, events.requested_payload("r3", [REF_C], "sisa", "t")),
    )
    assert [r.request_id for r in f.pending()] == ["r2", "r3"]
    assert f.live_model() == V1


def test_the_guarantee_is_exact_only_when_every_subject_is_exact() -> None:
    assert applied(["r"], [outcome(REF_A, "sisa", "exact")])["guarantee"] == "exact"
    assert applied(["r"], [outcome(REF_A, "sisa", "exact"), outcome(REF_B)])["guarantee"] == "approximate"
    assert applied(["r"], [])["guarantee"] == "exact"  # an empty batch removed nothing approximately


def test_an_unknown_event_type_is_skipped_so_later_events_do_not_break_older_daemons() -> None:
    f = fold(("checkpoint.signed", {"anything": 1}))
    assert f.size == 2 and f.pending() == [] and f.live_model() == V0


@pytest.mark.parametrize(
    ("desc", "items", "want"),
    [
        ("applied names a request never requested",
         [(events.FORGET_APPLIED, applied(["ghost"], []))], "seq 2: forget.applied names request 'ghost'"),
        ("a request applied twice",
         [(events.FORGET_REQUESTED, events.requested_payload("r1", [REF_A], "auto", "t")),
          (events.FORGET_APPLIED, applied(["r1"], [outcome(REF_A)])),
          (events.FORGET_APPLIED, applied(["r1"], []))], "seq 4: request 'r1' was already applied at seq 3"),
        ("a subject forgotten twice",
         [(events.FORGET_REQUESTED, events.requested_payload("r1", [REF_A], "auto", "t")),
          (events.FORGET_REQUESTED, events.requested_payload("r2", [REF_A], "auto", "t")),
          (events.FORGET_APPLIED, applied(["r1"], [outcome(REF_A)])),
          (events.FORGET_APPLIED, applied(["r2"], [outcome(REF_A)]))], f"seq 5: subject {REF_A} was already forgotten"),
        ("a request id reused",
         [(events.FORGET_REQUESTED, events.requested_payload("r1", [REF_A], "auto", "t")),
          (events.FORGET_REQUESTED, events.requested_payload("r1", [REF_B], "auto", "t"))],
         "seq 3: request_id 'r1' already requested at seq 2"),
        ("a second genesis", [(events.GENESIS, events.genesis_payload({}, "ab", V0))], "seq 2: genesis must be"),
    ],
)
def test_an_inconsistent_ledger_is_refused_naming_the_seq(desc: str, items: list, want: str) -> None:
    with pytest.raises(MalformedEvent, match=want.replace("(", r"\(")):
        fold(*items)


def test_entries_out_of_order_are_refused() -> None:
    f = LedgerFold()
    with pytest.raises(MalformedEvent, match="expected seq 1"):
        f.add(2, events.GENESIS, b"", {})


@pytest.mark.parametrize(
    ("desc", "mutate", "want"),
    [
        ("a missing field", lambda p: p.pop("request_ids"), "field 'request_ids' is missing"),
        ("a float where an int belongs", lambda p: p.update(samples_read=1.5), "'samples_read' must be a non-negative"),
        ("a negative count", lambda p: p.update(residue_steps=-1), "'residue_steps' must be a non-negative"),
        ("a boolean as an int", lambda p: p.update(samples_read=True), "'samples_read' must be a non-negative"),
        ("an unknown strategy", lambda p: p.update(resolved_strategy="auto"), "'resolved_strategy' must be one of"),
        ("a subject without its ref", lambda p: p["subjects"][0].pop("subject_ref"), r"'subjects\[0\].subject_ref' is missing"),
        ("a bad guarantee", lambda p: p["subjects"][0].update(guarantee="EXACT"), r"'subjects\[0\].guarantee' must be"),
        ("a model without digests", lambda p: p["model"].update(shard_digests=[]), "'model.shard_digests' must be a non-empty"),
        ("timings not an object", lambda p: p.update(timings=[1]), "'timings' must be an object"),
        ("recovered not a bool", lambda p: p.update(recovered=0), "'recovered' must be true or false"),
    ],
)
def test_a_malformed_applied_payload_names_the_seq_and_the_field(desc: str, mutate, want: str) -> None:
    payload = json.loads(json.dumps(applied(["r1"], [outcome(REF_A)])))
    mutate(payload)
    with pytest.raises(MalformedEvent, match=rf"seq 7 \(forget.applied\): .*{want}"):
        events.parse_applied(7, b"", payload)


def test_a_malformed_requested_payload_names_the_field() -> None:
    good = events.requested_payload("r1", [REF_A], "auto", "t")
    for key, value, want in [("subjects", [], "non-empty list"), ("subjects", [REF_A, REF_A], "without duplicates"),
                             ("strategy", "fast", "one of auto"), ("request_id", 7, "a string")]:
        with pytest.raises(MalformedEvent, match=f"seq 3 \\(forget.requested\\): field '{key}' must be .*{want}"):
            events.parse_requested(3, b"", {**good, key: value})


def test_builders_refuse_what_the_parsers_would_refuse() -> None:
    with pytest.raises(ValueError, match="strategy 'fast'"):
        events.requested_payload("r", [REF_A], "fast", "t")
    with pytest.raises(ValueError, match="no subject twice"):
        events.requested_payload("r", [REF_A, REF_A], "auto", "t")
    with pytest.raises(ValueError, match="genesis records version 0"):
        events.genesis_payload({}, "ab", V1)


def test_event_errors_are_in_the_servers_tree_and_still_value_errors() -> None:
    with pytest.raises(InvalidEvent):
        events.requested_payload("r", [REF_A], "fast", "t")
    with pytest.raises(MalformedEvent):
        LedgerFold().add(2, events.GENESIS, b"", {})
    for cls in (InvalidEvent, MalformedEvent):
        assert issubclass(cls, ForgetdError) and issubclass(cls, ValueError)


def test_event_ids_make_requests_and_batches_idempotent_keys() -> None:
    assert events.requested_event_id("r1") == "forget.requested:r1"
    assert events.applied_event_id(["r1", "r2"]) == "forget.applied:r1"


_subject = st.builds(
    SubjectOutcome,
    subject_ref=st.text("0123456789abcdef", min_size=64, max_size=64),
    shard=st.integers(0, 2**20), slice=st.integers(1, 2**20), region=st.sampled_from(REGIONS),
    strategy=st.sampled_from(CONCRETE_STRATEGIES), guarantee=st.sampled_from(GUARANTEES),
)


@settings(max_examples=60, deadline=None)
@given(subjects=st.lists(_subject, max_size=5), rids=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4),
       counts=st.tuples(*[st.integers(0, 2**53 - 1)] * 4), recovered=st.booleans())
def test_any_applied_payload_parses_back_to_what_was_built(subjects, rids, counts, recovered) -> None:
    residue, read, apply_us, queued_us = counts
    payload = events.applied_payload(request_ids=rids, strategy="auto", resolved_strategy="ohs", subjects=subjects,
                                     model=V1, residue_steps=residue, samples_read=read, apply_micros=apply_us,
                                     queued_micros=queued_us, recovered=recovered)
    parsed = events.parse_applied(5, b"leaf", json.loads(json.dumps(payload)))
    assert parsed.subjects == tuple(subjects) and parsed.request_ids == tuple(rids) and parsed.model == V1
    assert (parsed.residue_steps, parsed.samples_read, parsed.apply_micros, parsed.queued_micros) == counts
    assert parsed.recovered is recovered
