"""`forgetd ledger bench`'s group-commit figures, end to end at a tiny size: for each writer count its rate,
events per commit and ratio to the raw single-commit SQLite measured in the same rounds, beside the figures
the bench already printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.ledger.bench import daemon_forget, format_table, run_bench
from forgetd.ledger.canonical import canonical_bytes, envelope_bytes, normalize
from forgetd.ledger.cli import ledger as ledger_cli

TINY = ["--appends", "8", "--batched", "4", "--entries", "10", "--runs", "1"]


def test_the_figures_for_each_writer_count_sit_beside_raw_sqlite(tmp_path: Path) -> None:
    result = CliRunner().invoke(ledger_cli, ["bench", *TINY, "--grouped", "24", "--writers", "3", "--writers", "2",
                                             "--writers", "3", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = {f["name"]: f for f in json.loads(result.output[result.output.index("["):])}
    raw = figures["raw SQLite inserts, same settings"]["value"]
    for name in ("durable single appends (ledger)", "ledger / raw SQLite", "batched appends"):
        assert figures[name]["value"] > 0, name  # the figures the bench had keep their names
    for writers in (3, 2):
        rate = figures[f"group-commit appends, {writers} writers"]
        assert rate["unit"] == "appends/s" and rate["note"].startswith("24 appends")
        per_commit = figures[f"events per commit, {writers} writers"]["value"]
        assert 1 <= per_commit <= writers  # every writer waits for its own entry: at most one each per commit
        ratio = figures[f"group commit {writers} writers / raw SQLite"]["value"]
        assert ratio == pytest.approx(rate["value"] / raw)
    assert not [n for n in figures if "4 writers" in n]
    assert sum("writers / raw SQLite" in n for n in figures) == 2  # a writer count given twice is measured once
    assert list(tmp_path.iterdir()) == []


def test_the_default_writer_counts_are_8_and_32_and_show_in_the_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(ledger_cli, ["bench", *TINY, "--grouped", "8", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("group-commit appends, 8 writers", "events per commit, 32 writers",
                 "group commit 8 writers / raw SQLite", "target >= 3 at 8 writers"):
        assert name in result.output


def test_no_writers_leaves_the_old_figures_alone(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, appends=4, rounds=2, grouped=4, writers=(), batched=2, batch_size=2,
                        verify_entries=4, verify_runs=1, proofs=2)
    names = [f.name for f in figures]
    assert names[:3] == ["durable single appends (ledger)", "raw SQLite inserts, same settings", "ledger / raw SQLite"]
    assert not [n for n in names if "writers" in n]
    assert "ledger / raw SQLite" in format_table(figures)


def test_the_bench_event_is_shaped_like_the_daemons_forget() -> None:
    etype, payload, event_id = daemon_forget(7)
    assert etype == "forget.requested" and event_id == f"forget.requested:{payload['request_id']}"
    assert sorted(payload) == ["request_id", "requested_at", "strategy", "subjects"]
    envelope = envelope_bytes(seq=123456, event_id=event_id, event_type=etype,
                              recorded_at="2025-01-02T03:04:05.000006Z", payload_bytes=canonical_bytes(normalize(payload)))
    assert 300 <= len(envelope) <= 350  # a Forget's envelope is about 325 bytes


def test_writers_must_be_positive(tmp_path: Path) -> None:
    result = CliRunner().invoke(ledger_cli, ["bench", *TINY, "--writers", "0", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--writers" in result.output
