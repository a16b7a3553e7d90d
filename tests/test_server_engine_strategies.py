"""Strategy routing and the edge cases of the threshold: m = 0 (all update region) and m = S (all retrain)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.strategies import route


@pytest.mark.parametrize(
    "strategy, slice_, expected",
    [
        # S = 10, m = 3: slices 1..7 update region, 8..10 retrain region
        ("hs", 7, ("update", "dpus", "approximate")),
        ("hs", 8, ("retrain", "sisa", "exact")),
        ("ohs", 1, ("update", "ohs", "approximate")),
        ("ohs", 10, ("retrain", "sisa", "exact")),
        ("sisa", 1, ("update", "sisa", "exact")),
        ("dpus", 9, ("retrain", "dpus", "approximate")),
        ("retrain", 4, ("update", "retrain", "exact")),
    ],
)
def test_route(strategy: str, slice_: int, expected: tuple[str, str, str]) -> None:
    assert route(strategy, slice_, 10, 3) == expected


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("synthetic", n=200, seed=4)


def _train(dataset: Dataset, root: Path, budget: int, strategy: str = "hs") -> Engine:
    cfg = EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", batch_size=25, hidden_sizes=(8,), budget=budget, seed=3,
                       default_strategy=strategy)
    return Engine.train(dataset, cfg, root)


def test_with_m_0_hs_and_ohs_are_dpus(dataset: Dataset, tmp_path: Path) -> None:
    with _train(dataset, tmp_path / "a", budget=0) as a:
        assert a.m == 0
        victim = a.sample_ids()[0]
        for name in ("b", "c"):
            shutil.copytree(a.store_dir, tmp_path / name)
        dpus = a.forget([victim], "dpus")
    with Engine.open(tmp_path / "b") as b, Engine.open(tmp_path / "c") as c:
        hs, ohs = b.forget([victim], "hs"), c.forget([victim], "ohs")
    assert dpus.digest == hs.digest == ohs.digest
    assert dpus.residue_steps == hs.residue_steps == ohs.residue_steps == 0  # every step was recorded
    assert ohs.samples_read == 0


def test_with_m_s_hs_and_ohs_are_sisa(dataset: Dataset, tmp_path: Path) -> None:
    with _train(dataset, tmp_path / "a", budget=10**9) as a:
        assert a.m == 4 and a.increments_bytes == 0
        victim = a.sample_ids()[0]
        shutil.copytree(a.store_dir, tmp_path / "b")
        plan = a.plan([victim], "auto")
        assert plan.samples[0].strategy == "sisa" and plan.guarantee == "exact"
        sisa = a.forget([victim], "sisa")
    with Engine.open(tmp_path / "b") as b:
        ohs = b.forget([victim], "ohs")
    assert sisa.digest == ohs.digest and ohs.guarantee == "exact"


def test_dpus_of_a_retrain_region_sample_subtracts_nothing_and_reports_the_residue(dataset: Dataset, tmp_path: Path) -> None:
    with _train(dataset, tmp_path / "a", budget=200) as a:
        assert a.m == 1
        late = next(e.sample_id for e in a.plan(a.sample_ids(), "hs").samples if e.region == "retrain")
        before = a.digest()
        result = a.forget([late], "dpus")
        assert result.digest == before  # no recorded increment held it
        assert result.residue_steps == 1 and result.guarantee == "approximate"  # E = 1 unrecorded batch


def test_auto_is_the_configured_default(dataset: Dataset, tmp_path: Path) -> None:
    with _train(dataset, tmp_path / "a", budget=200, strategy="ohs") as a:
        early = next(e.sample_id for e in a.plan(a.sample_ids(), "hs").samples if e.region == "update")
        plan = a.plan([early])
        assert plan.strategy == "ohs" and plan.samples[0].strategy == "ohs"
        assert plan.estimated_samples_read == 200  # step S = 4 alone, E = 1
        result = a.forget([early])
        assert result.strategy == "ohs" and result.samples_read == 199


def test_coalesced_request_retrains_each_shard_once_from_its_earliest_slice(dataset: Dataset, tmp_path: Path) -> None:
    with _train(dataset, tmp_path / "a", budget=0) as a:
        plan = a.plan(a.sample_ids(), "sisa")
        by_slice = {}
        for e in plan.samples:
            by_slice.setdefault(e.slice, e.sample_id)
        pair = [by_slice[3], by_slice[2]]
        shutil.copytree(a.store_dir, tmp_path / "b")
        together = a.forget(pair, "sisa")
        assert together.samples_read == (100 - 1) + (150 - 2) + (200 - 2)  # steps 2..4 once, without both
    with Engine.open(tmp_path / "b") as b:
        b.forget(pair[:1], "sisa")
        one_by_one = b.forget(pair[1:], "sisa")
    assert together.digest == one_by_one.digest  # exact either way
