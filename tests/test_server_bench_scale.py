"""`forgetd bench scale`: the whole bench at a tiny size through the command, and its met/missed rule on
fixed figures. No figure is asserted to be fast or small: the bench prints them, the tests check it did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main
from forgetd.server.bench.scale import ScaleBench
from forgetd.server.bench.scale_figures import PARTS, store_parts
from forgetd.server.bench.scale_report import GROWN, TARGETS, flat, growth, judge, verdicts
from forgetd.server.errors import InvalidConfig

from helpers import train_small_store

# Every figure a target names, at a size where the target is met, and the same figures missing each one.
MET = {"n": 1000.0, "store_over_raw": 1.8, "increments_per_sample_per_param": 0.02, "first_predict_seconds": 3.0,
       "rss_over_raw": 1.2, "training_over_recording": 1.3, "acks_over_sqlite": 4.0}
MISSED = {"n": 1000.0, "store_over_raw": 2.2, "increments_per_sample_per_param": 0.05, "first_predict_seconds": 6.0,
          "rss_over_raw": 1.6, "training_over_recording": 1.7, "acks_over_sqlite": 2.0}


@pytest.mark.slow  # four daemon starts and five small trainings: about 30 s on an idle 2-core machine
def test_the_bench_writes_every_figure_and_a_plot_of_each(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", "scale", "--rows", "1200", "--features", "12", "--classes", "5",
                                       "--fractions", "0.5,1.0", "--data", "synthetic", "--forgets", "32",
                                       "--work", str(tmp_path / "work"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [r["n"] for r in results["runs"]] == [600, 1200]
    for run in results["runs"]:
        assert not [part for part in run.values() if isinstance(part, dict) and "error" in part], run
        figures = flat(run)
        wanted = {t.key for t in TARGETS if t.key not in ("acks_over_sqlite",)} | set(GROWN) | {
            "bare_us_per_sample", "recording_us_per_sample", "rows_over_raw", "rows_v1_over_raw"}
        assert wanted <= set(figures), wanted - set(figures)
        assert run["store"]["store_bytes"] == sum(run["store"]["parts_bytes"].values())
    assert {"acks_over_sqlite", "sqlite_commits_per_second"} <= set(flat(results["runs"][-1]))  # once, at n
    assert {v["key"] for v in results["verdicts"]} == {t.key for t in TARGETS}
    assert all(v["met"] in (True, False) for v in results["verdicts"] + results["growth"])
    for name in results["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {f"{t.key}.png" for t in TARGETS} <= set(results["plots"])
    markdown = (out / "results.md").read_text()
    assert all(t.label in markdown for t in TARGETS)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # stores removed


def test_every_target_is_met_by_figures_on_its_side_and_missed_past_it() -> None:
    assert [v.met for v in judge(MET)] == [True] * len(TARGETS)
    assert [v.met for v in judge(MISSED)] == [False] * len(TARGETS)
    at_the_line = judge({t.key: t.target for t in TARGETS})
    assert all(v.met for v in at_the_line)
    assert [v.word for v in judge({"n": 10.0})] == ["not measured"] * len(TARGETS)


def test_growth_is_judged_against_the_growth_of_the_data() -> None:
    small = {"n": 500.0, "store_bytes": 100.0, "rss_bytes": 100.0}
    large = {"n": 1000.0, "store_bytes": 210.0, "rss_bytes": 211.0}
    by_key = {v.key: v for v in growth(small, large)}
    assert by_key["growth:store_bytes"].met is True and by_key["growth:store_bytes"].value == pytest.approx(2.1)
    assert by_key["growth:rss_bytes"].met is False
    assert by_key["growth:train_cpu_seconds"].met is None  # not measured at either size
    quarter = {"n": 250.0, "store_bytes": 100.0}
    assert {v.key: v.met for v in growth(quarter, large)}["growth:store_bytes"] is True  # 2.1x of 4x the data


def test_growth_compares_the_largest_size_with_the_one_nearest_half_of_it() -> None:
    def run(n: int, store: int) -> dict[str, object]:
        return {"n": n, "features": 1, "store": {"store_bytes": store}}

    _, grown = verdicts([run(1000, 300), run(250, 100), run(500, 100)])
    assert {v.key: v.value for v in grown}["growth:store_bytes"] == pytest.approx(3.0)


def test_the_walk_names_every_byte_of_a_store_once(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    parts = store_parts(store)
    assert set(parts) == set(PARTS)
    assert parts["rows"] > 0 and parts["increments"] > 0 and parts["checkpoints"] > 0 and parts["indexes"] > 0
    files = {p.stat().st_ino: p for p in store.rglob("*") if p.is_file()}
    assert sum(parts.values()) == sum(p.stat().st_blocks * 512 or p.stat().st_size for p in files.values())


@pytest.mark.parametrize("options, fix", [
    (dict(fractions=()), "fractions"),
    (dict(fractions=(0.5, 1.5)), "(0, 1]"),
    (dict(fractions=(0.5, 0.5)), "each size once"),
    (dict(rows=50), "too small"),
    (dict(skip=("nothing",)), "choose from"),
    (dict(data="mnist"), "choose from"),
    (dict(forgets=16), "at least 32"),
])
def test_a_bench_config_that_cannot_run_says_what_to_change(options: dict[str, object], fix: str) -> None:
    with pytest.raises(InvalidConfig, match=None) as err:
        ScaleBench(**options)  # type: ignore[arg-type]
    assert fix in str(err.value)


def test_the_command_refuses_bad_fractions_before_doing_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "scale", "--fractions", "half", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "0.5,1.0" in result.output
    assert not (tmp_path / "out").exists()
