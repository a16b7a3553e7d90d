"""`forgetd bench shards` at a tiny size, inline and a process pool only (no Ray start: it stays fast): the
figures exist and are numbers, both executors published the same digests, and bad settings are clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import bench
from forgetd.server.bench.shards import ShardsBenchConfig
from forgetd.server.errors import InvalidConfig

TINY = ["--rows", "400", "--features", "8", "--shards", "2", "--slices", "3", "--bursts", "2", "--per-shard", "1",
        "--workers", "2", "--executors", "inline,process"]


def number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0


def test_the_bench_prints_every_figure_for_each_executor() -> None:
    done = CliRunner().invoke(bench, ["shards", *TINY, "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    figures = json.loads(done.output)
    assert set(figures["executors"]) == {"inline", "process"}
    for kind, e in figures["executors"].items():
        assert len(e["burst_seconds"]) == 2 and all(number(t) and t > 0 for t in e["burst_seconds"]), kind
        assert number(e["median_burst_s"]) and number(e["speedup"]) and number(e["start_s"]), kind
    assert figures["executors"]["inline"]["speedup"] == 1.0
    assert figures["executors"]["process"]["start_s"] > 0  # the pool's spawn and imports, timed
    assert figures["digests_equal"] is True
    assert figures["tasks_per_burst"] == 2 and figures["ids_per_burst"] == 2
    for key in ("input_bytes_per_task", "rows_bytes_per_task", "result_bytes_per_task", "samples_read_per_burst"):
        assert number(figures[key]) and figures[key] > 0, key
    assert figures["ray_round_trip_s"] is None


def test_bad_bench_settings_say_how_to_fix_them() -> None:
    with pytest.raises(InvalidConfig, match="must include inline"):
        ShardsBenchConfig(executors=("process",))
    with pytest.raises(InvalidConfig, match="name some of inline, process, ray"):
        ShardsBenchConfig(executors=("inline", "threads"))
    with pytest.raises(InvalidConfig, match="choose one of sisa, retrain"):
        ShardsBenchConfig(strategy="dpus")
    done = CliRunner().invoke(bench, ["shards", "--executors", "process"])
    assert done.exit_code != 0 and "must include inline" in done.output
