"""`forgetd bench unlearning`: a smoke run on small synthetic data, the CLI, config errors, and the assessment.

The smoke run is the real protocol end to end (train, five strategies on store copies, bursts, both
membership-inference attacks, plots) on 400 rows, 3 requests, S=3, E=1: a few seconds on one core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import bench
from forgetd.server.bench.unlearning import BENCH_STRATEGIES, BenchConfig, assess, run_bench, unlearning
from forgetd.server.errors import InvalidConfig

REQUIRED = ("mean_seconds", "p50_seconds", "p95_seconds", "accuracy", "mia_auc", "mia_tpr_at_1pct_fpr",
            "shadow_member_rate", "samples_read", "burst_seconds")
SMOKE = dict(data="synthetic", rows=400, requests=3, slices=3, epochs=1, epoch_schedule="per-step", shadows=1,
             device="cpu", lira_shadows=8, vulnerable="always")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    run_bench(BenchConfig(**SMOKE), out, quiet=True)  # type: ignore[arg-type]
    return json.loads((out / "results.json").read_text()), out


def test_results_json_has_the_issue_shape(smoke: tuple[dict[str, Any], Path]) -> None:
    results, _ = smoke
    assert set(results["strategies"]) == {"dpus", "sisa", "hs", "ohs", "retrain"}
    for name, entry in results["strategies"].items():
        missing = [k for k in REQUIRED if k not in entry]
        assert not missing, f"{name} lacks {missing}"
        for k in REQUIRED:
            assert isinstance(entry[k], (int, float)) and not isinstance(entry[k], bool), (name, k, entry[k])
        assert 0.0 <= entry["accuracy"] <= 1.0 and 0.0 <= entry["mia_auc"] <= 1.0
        assert entry["p50_seconds"] <= entry["p95_seconds"]
    c = results["config"]
    assert c["requests"] == 3 and c["device"] == "cpu" and c["engine"]["slices"] == 3
    assert len(c["request_ids"]) == len(set(c["request_ids"])) == 3
    assert results["complete"] is True


def test_every_strategy_ran_every_request(smoke: tuple[dict[str, Any], Path]) -> None:
    results, _ = smoke
    s = results["strategies"]
    for name in BENCH_STRATEGIES:
        assert len(s[name]["request_seconds"]) == 3
        assert sum(s[name]["guarantees"].values()) == 3
    assert s["dpus"]["guarantees"] == {"APPROXIMATE": 3} and s["dpus"]["samples_read"] == 0
    assert s["sisa"]["guarantees"] == {"EXACT": 3} and s["retrain"]["guarantees"] == {"EXACT": 3}
    # RETRAIN reads the whole remaining data set every time; SISA only from the sample's slice.
    assert s["retrain"]["samples_read"] > s["sisa"]["samples_read"] > 0
    # Exact unlearning: three SISA forgets leave the model RETRAIN trains from scratch without the three.
    assert results["sisa_equals_retrain"] is True
    assert s["sisa"]["accuracy"] == s["retrain"]["accuracy"] and s["sisa"]["mia_auc"] == s["retrain"]["mia_auc"]


def test_markdown_plots_and_no_leftover_stores(smoke: tuple[dict[str, Any], Path]) -> None:
    results, out = smoke
    md = (out / "results.md").read_text()
    for name in BENCH_STRATEGIES:
        assert f"| {name.upper()} |" in md
    assert len(results["plots"]) == 5
    for p in results["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(q.name for q in out.iterdir()) == sorted(
        ["results.json", "results.md", "accuracy.png", "time.png", "mia.png", "request_times.png", "lira.png"])


def test_cli_runs_without_bursts(tmp_path: Path) -> None:
    args = ["--data", "synthetic", "--rows", "300", "--requests", "2", "--slices", "2", "--epochs", "1",
            "--shadows", "1", "--lira-shadows", "0", "--device", "cpu", "--no-burst", "--quiet", "--out", str(tmp_path)]
    result = CliRunner().invoke(bench, ["unlearning", *args])  # as `forgetd bench unlearning` runs it
    assert result.exit_code == 0, result.output
    assert "| RETRAIN |" in result.output and "results.json" in result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert all(v["burst_seconds"] is None for v in data["strategies"].values())


@pytest.mark.parametrize("args, message", [
    (["--data", "adult"], "Error: data is 'adult'; give adult:DIR, csv:PATH, npz:PATH, purchase:NPZ, census:DIR, "
     "olympics:CSV or synthetic"),
    (["--data", "synthetic", "--requests", "0"], "Error: requests is 0; give at least 1 (the paper uses 100)"),
    (["--data", "synthetic", "--slices", "0"], "Error: slices is 0; use at least 1 (10 is a good start)"),
    (["--data", "synthetic", "--rows", "40", "--requests", "50"],
     "Error: requests is 50 but the training split has 40 rows; ask for fewer"),
])
def test_cli_errors_say_how_to_fix(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(unlearning, [*args, "--quiet", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip() == message


def test_the_bench_runs_every_concrete_strategy_cheapest_first() -> None:
    from forgetd.server.vocabulary import CERTIFIED, CONCRETE_STRATEGIES, INFLUENCE

    # The paper's table: every concrete strategy but the Newton-step ones, which have rows of their own.
    assert sorted(BENCH_STRATEGIES) == sorted(set(CONCRETE_STRATEGIES) - {INFLUENCE, CERTIFIED})
    assert BENCH_STRATEGIES == ("dpus", "hs", "ohs", "sisa", "retrain")  # the order results.json and the table keep


def test_config_rejects_a_bad_device() -> None:
    with pytest.raises(InvalidConfig, match="choose auto, cpu, cuda or cuda:N"):
        BenchConfig(data="synthetic", device="tpu")


def _entry(seconds: float, accuracy: float, auc: float, read: int = 0, rate: float = 0.5,
           burst: float | None = 1.0) -> dict[str, Any]:
    return {"mean_seconds": seconds, "accuracy": accuracy, "mia_auc": auc, "samples_read": read, "shadow_member_rate": rate,
            "shadow_test_member_rate": 0.5, "burst_seconds": burst}


def test_assess_reads_targets_against_known_numbers() -> None:
    results = {"config": {"requests": 100}, "strategies": {
        "dpus": _entry(0.01, 0.80, 0.50), "hs": _entry(1.0, 0.846, 0.52, 100), "ohs": _entry(4.0, 0.849, 0.60, 400),
        "sisa": _entry(8.0, 0.850, 0.51, 1000), "retrain": _entry(12.0, 0.851, 0.51, 2000, burst=30.0)}}
    checks = {c.name: c for c in assess(results)}
    assert checks["HS >= 6x faster than SISA"].met and checks["HS >= 6x faster than SISA"].measured == "8.0x (samples read 10.0x)"
    assert checks["OHS >= 2x faster than SISA"].met
    assert checks["DPUS up to 5 points less accurate than HS"].met  # 4.6 points
    assert checks["HS within 0.5 points of SISA"].met  # 0.4 points
    assert checks["OHS within 0.3 points of RETRAIN"].met  # 0.2 points
    assert checks["OHS comparable to SISA (within 0.5 points)"].met  # 0.1 points
    assert not checks["OHS: forgotten samples' attack AUC within 0.05 of RETRAIN's"].met  # 0.09 away
    assert checks["SISA: forgotten samples' attack AUC within 0.05 of RETRAIN's"].met
    assert checks["HS: burst of 100 coalesced requests under 3x one SISA request"].met
    assert assess({"config": {}, "strategies": {"dpus": _entry(1, 1, 0.5)}}) == []
