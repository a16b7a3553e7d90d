"""`forgetd bench admission` end to end on a tiny store: every figure is there, the transport baseline beside
the Forgets and raw SQLite, the ratios are the figures' own, and the report and the scale table show them.
Figures, not timings: nothing here asserts a speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetd.server.bench.admission import admission_figures, format_admission
from forgetd.server.bench.scale_report import flat


def test_the_figures_hold_forgets_raw_sqlite_and_empty_calls_side_by_side(tmp_path: Path) -> None:
    figures = admission_figures(clients=2, requests=40, store_dir=tmp_path, rounds=2)
    for key in ("forgets_per_s", "raw_sqlite_commits_per_s", "empty_calls_per_s", "entries_per_commit",
                "daemon_cpu_ms_per_forget", "daemon_cpu_ms_per_empty_call"):
        assert set(figures[key]) == {"1", "2"} and all(v > 0 for v in figures[key].values()), key
    forgets, raw, empty = figures["forgets_per_s"], figures["raw_sqlite_commits_per_s"], figures["empty_calls_per_s"]
    ratios = figures["ratios"]
    assert ratios["forgets_2_clients/raw_1_thread"] == pytest.approx(forgets["2"] / raw["1"])
    assert ratios["forgets_2_clients/empty_calls_2_clients"] == pytest.approx(forgets["2"] / empty["2"])
    assert ratios["forgets_1_client/empty_calls_1_client"] == pytest.approx(forgets["1"] / empty["1"])
    assert figures["entries_per_commit"]["1"] == 1.0  # one client: nothing to share a commit with
    report = format_admission(figures)
    assert "empty gRPC calls/s (health Check)" in report and "forgets_2_clients/empty_calls_2_clients" in report

    run = {"n": 1, "features": 1, "admission": {"acks_per_second": forgets["2"], "detail": figures}}
    row = flat(run)
    assert row["empty_calls_per_second"] == empty["2"]
    assert row["acks_over_empty_calls"] == pytest.approx(forgets["2"] / empty["2"])


def test_a_report_from_before_the_transport_baseline_still_formats() -> None:
    old = {"clients": 8, "requests": 800, "rounds": 4, "disk": "/tmp", "row_bytes": 325,
           "forgets_per_s": {"1": 256.0, "8": 489.0}, "raw_sqlite_commits_per_s": {"1": 2208.0, "8": 600.0},
           "entries_per_commit": {"1": 1.0, "8": 2.91}, "ratios": {"forgets_8_clients/raw_1_thread": 0.22}}
    assert "empty gRPC" not in format_admission(old) and "489" in format_admission(old)
    assert "empty_calls_per_second" not in flat({"n": 1, "features": 1, "admission": {"detail": old}})
