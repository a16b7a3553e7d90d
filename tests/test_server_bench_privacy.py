"""LiRA inside `forgetd bench unlearning` (shadows trained like the store, both forget sets, the checks) and
the sweeps (`--sweep slices|shards|budget`): small synthetic runs end to end, and the checks on known numbers."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from forgetd.server.bench.privacy import LiraProbe, has_power, lira_checks, train_like_the_store
from forgetd.server.bench.sweeps import budget_for_m, run_sweep
from forgetd.server.bench.unlearning import BenchConfig, run_bench, unlearning
from forgetd.server.config import EngineConfig
from forgetd.server.data import load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import InvalidConfig

TINY = dict(slices=3, epochs=1, epoch_schedule="per-step", batch_size=32, hidden_sizes=(8,), device="cpu")


# -- shadows trained like the store ---------------------------------------------------------------------------


def test_a_shadow_is_the_store_the_engine_trains_on_the_same_rows(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", n=300, seed=3)
    cfg = EngineConfig(**{**TINY, "shards": 2, "seed": 11})
    # A shadow names its rows by position (their ids are not its business); so does this store, so both hash
    # the same ids into the same shards and slices.
    ids_as_positions = dataclasses.replace(ds, train_ids=tuple(str(i) for i in range(len(ds.train_ids))))
    with Engine.train(ids_as_positions, cfg, tmp_path / "p") as eng:
        want = eng.predict_proba(ds.X_test)
    got = train_like_the_store(ds.X_train, ds.y_train, cfg, 11, ds.num_classes, "cpu")(ds.X_test)
    assert np.array_equal(got, want)


@pytest.fixture(scope="module")
def probe() -> tuple[LiraProbe, Any]:
    ds = load_dataset("synthetic", n=300, seed=1)
    return LiraProbe.train(ds, EngineConfig(**TINY), shadows=8, seed=0, resamples=50), ds


def test_every_pool_row_is_in_for_half_the_shadows(probe: tuple[LiraProbe, Any]) -> None:
    p, ds = probe
    assert p.attack.keep.shape == (8, len(ds.y_train) + len(ds.y_test))
    assert (p.attack.keep.sum(axis=0) == 4).all()
    assert p.nonmembers.tolist() == list(range(len(ds.y_train), len(ds.y_train) + len(ds.y_test)))
    d = p.describe()
    assert d["shadows"] == 8 and d["pool"] == p.attack.X_pool.shape[0] and d["global_variance"] is True


def test_most_vulnerable_rows_are_training_rows_ranked_by_separation(probe: tuple[LiraProbe, Any]) -> None:
    p, ds = probe
    rows = p.most_vulnerable(10, exclude=np.array([0, 1, 2]))
    assert len(rows) == 10 and rows.max() < len(ds.y_train) and not set(rows) & {0, 1, 2}
    from forgetd.server.bench.lira import separation

    sep = separation(p.attack.fit)[rows]
    assert (np.diff(sep) <= 0).all()


def test_measure_gives_auc_tprs_and_intervals(probe: tuple[LiraProbe, Any]) -> None:
    p, ds = probe
    model = train_like_the_store(ds.X_train, ds.y_train, EngineConfig(**TINY), 5, ds.num_classes, "cpu")
    e = p.measure(model, np.arange(20))
    for key in ("auc", "tpr_at_0_1pct_fpr", "tpr_at_1pct_fpr"):
        lo, hi = e[f"{key}_interval"]
        assert 0.0 <= lo <= hi <= 1.0
    assert e["n_members"] == 20 and e["n_nonmembers"] == len(ds.y_test) and 0 <= e["offline_auc"] <= 1


# -- the checks on known numbers -----------------------------------------------------------------------------


def _lira(auc: float, lo: float, hi: float) -> dict[str, Any]:
    return {"auc": auc, "auc_interval": [lo, hi]}


def test_lira_checks_read_power_tolerance_and_overlap() -> None:
    results = {
        "original": {"lira": _lira(0.53, 0.49, 0.57)},
        "strategies": {"dpus": {"lira": _lira(0.515, 0.46, 0.56)}, "hs": {"lira": _lira(0.53, 0.48, 0.58)},
                       "retrain": {"lira": _lira(0.50, 0.45, 0.55)}},
        "vulnerable": {"original": {"lira": _lira(0.80, 0.74, 0.86)},
                       "strategies": {"dpus": {"lira": _lira(0.70, 0.64, 0.76)}, "ohs": {"lira": _lira(0.41, 0.35, 0.47)},
                                      "retrain": {"lira": _lira(0.40, 0.34, 0.46)}}},
    }
    checks = {c.name: c for c in lira_checks(results)}
    assert checks["LiRA clearly above chance before forgetting (AUC interval above 0.55) on a forget set"].met
    assert checks["DPUS: LiRA AUC on the random forget set within 0.02 of RETRAIN's, intervals overlapping"].met
    assert not checks["HS: LiRA AUC on the random forget set within 0.02 of RETRAIN's, intervals overlapping"].met
    vul = "LiRA AUC on the most vulnerable forget set within 0.02 of RETRAIN's, intervals overlapping"
    assert not checks[f"DPUS: {vul}"].met and checks[f"OHS: {vul}"].met
    assert checks[f"OHS: {vul}"].measured == "0.410 [0.350, 0.470] vs 0.400 [0.340, 0.460]"
    assert not has_power(results["original"]["lira"]) and has_power(results["vulnerable"]["original"]["lira"])
    assert lira_checks({"strategies": {}}) == []


# -- the bench with LiRA -------------------------------------------------------------------------------------


def test_the_bench_attacks_both_forget_sets_with_lira(tmp_path: Path) -> None:
    config = BenchConfig(data="synthetic", rows=300, requests=3, slices=3, epochs=1, epoch_schedule="per-step",
                         shadows=1, device="cpu", lira_shadows=6, vulnerable="always", burst=False)
    results = run_bench(config, tmp_path, quiet=True)
    assert results["lira"]["shadows"] == 6
    assert results["original"]["lira"]["n_members"] == 3
    assert all("lira" in v for v in results["strategies"].values())
    v = results["vulnerable"]
    assert len(v["request_ids"]) == 3 and set(v["strategies"]) == set(results["strategies"])
    # SISA is exact on the second forget set too: its model, and so its LiRA figures, are RETRAIN's.
    assert v["strategies"]["sisa"]["lira"] == v["strategies"]["retrain"]["lira"]
    names = [c["name"] for c in results["checks"]]
    assert any("most vulnerable forget set" in n for n in names)
    md = (tmp_path / "results.md").read_text()
    assert "| most vulnerable forget set |" in md and "| before forgetting |" in md


@pytest.mark.parametrize("settings, message", [
    ({"lira_shadows": 2}, "lira_shadows is 2; give 0 (no LiRA) or at least 4"),
    ({"vulnerable": "maybe"}, "vulnerable is 'maybe'; choose one of auto, always, never"),
    ({"epoch_schedule": "weekly"}, "epoch_schedule is 'weekly'; choose one of sisa, per-step"),
])
def test_bench_config_errors_say_how_to_fix(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfig, match=re.escape(message)):
        BenchConfig(data="synthetic", **settings)


# -- sweeps --------------------------------------------------------------------------------------------------


def test_budget_for_m_gives_exactly_m(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", n=300, seed=0)
    for m in (1, 2, 3):
        cfg = EngineConfig(**{**TINY, "slices": 4, "epoch_schedule": "sisa", "epochs": 3})
        cfg = EngineConfig(**{**cfg.__dict__, "budget": budget_for_m(ds, cfg, m)})
        with Engine.train(ds, cfg, tmp_path / f"m{m}") as eng:
            assert eng.m == m


@pytest.mark.parametrize("sweep, values, strategies", [
    ("slices", (2, 3), {"hs", "ohs", "sisa"}),
    ("shards", (1, 2), {"hs", "sisa"}),
    ("budget", (1, 2), {"hs", "ohs"}),
])
def test_each_sweep_writes_a_table_and_a_plot(tmp_path: Path, sweep: str, values: tuple[int, ...],
                                              strategies: set[str]) -> None:
    ds = load_dataset("synthetic", n=300, seed=0)
    results = run_sweep(ds, EngineConfig(**TINY), sweep, tmp_path, requests=2, seed=0, values=values, quiet=True)
    assert [p["value"] for p in results["points"]] == list(values) and results["complete"]
    for p in results["points"]:
        assert strategies <= set(p["strategies"])
        for v in p["strategies"].values():
            assert len(v["request_seconds"]) == 2 and set(v["accuracy"]) == {"mean", "vote"}
    if sweep == "budget":
        assert [p["m"] for p in results["points"]] == [1, 2]
        assert {"sisa", "retrain"} <= set(results["points"][0]["strategies"])  # the references, once
    if sweep == "slices":
        assert [p["engine"]["slices"] for p in results["points"]] == [2, 3]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["results.json", "results.md", "sweep.png"]
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "results.json").read_text())["sweep"] == sweep
    assert f"| {values[0]} |" in (tmp_path / "results.md").read_text()


def test_the_sweep_cli(tmp_path: Path) -> None:
    args = ["--data", "synthetic", "--rows", "300", "--requests", "2", "--epochs", "1", "--epoch-schedule",
            "per-step", "--device", "cpu", "--sweep", "shards", "--values", "1,2", "--slices", "2", "--quiet",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(unlearning, args)
    assert result.exit_code == 0, result.output
    assert "Sweep over shards" in result.output and "sweep.png" in result.output
    bad = CliRunner().invoke(unlearning, [*args[:-2], "--values", "1,x", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "give whole numbers separated by commas" in bad.output
