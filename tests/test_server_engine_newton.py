"""INFLUENCE on the MLP in the engine: bitwise deterministic, its damping policy recorded, the checkpoints it
leaves uncorrected never restarted from, and the fallback retrain; CERTIFIED refused on an MLP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import train_small_store
from forgetd.server.engine import newton
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import UnsupportedStrategy


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_store(tmp_path_factory.mktemp("newton") / "store")


def copy(trained: Path, dest: Path) -> Engine:
    shutil.copytree(trained, dest)
    return Engine.open(dest, device="cpu")


def by_slice(engine: Engine) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for sid in engine.sample_ids():
        out.setdefault(engine.plan([sid], "sisa").samples[0].slice, []).append(sid)
    return out


def test_influence_is_bitwise_deterministic_and_records_its_step(trained: Path, tmp_path: Path) -> None:
    with copy(trained, tmp_path / "a") as a, copy(trained, tmp_path / "b") as b:
        ids = a.sample_ids()[:3]
        ra, rb = a.forget(ids, "influence"), b.forget(ids, "influence")
        assert (ra.digest, ra.details) == (rb.digest, rb.details)
        assert ra.guarantee == "approximate" and {s.strategy for s in ra.samples} == {"influence"}
        step = ra.details["influence"][0]
        assert step["retrained"] is False and step["cg_iterations"] >= 1
        assert float(step["damping"]) == pytest.approx(0.01 * 10 ** step["damping_retries"])
        assert float(step["retained_grad_norm"]) >= 0 and float(step["residual"]) >= 0
        assert ra.digest != Engine.open(trained, device="cpu").digest()  # the live parameters moved


def test_a_later_retrain_starts_where_the_influence_left_checkpoints_uncorrected(trained: Path, tmp_path: Path) -> None:
    with copy(trained, tmp_path / "a") as a, copy(trained, tmp_path / "b") as b:
        slices = by_slice(a)
        first, last = slices[1][0], slices[max(slices)][0]
        cost_before = a.plan([last], "sisa").estimated_samples_read
        a.forget([first], "influence")
        assert a.plan([last], "sisa").estimated_samples_read > cost_before  # now from slice 1, not the last
        report = a.forget([last], "sisa")
        assert report.guarantee == "exact"
        # Retrained from slice 1 without both: bitwise what RETRAIN without them gives, so `first` is gone too.
        assert report.digest == b.forget([first, last], "retrain").digest
        assert not a._store.shards[0].influenced  # a retrain clears the bookkeeping


def test_when_no_damping_works_the_shard_is_retrained(trained: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newton, "_damped", lambda *args: None)  # every damping met non-positive curvature
    with copy(trained, tmp_path / "a") as a, copy(trained, tmp_path / "b") as b:
        ids = a.sample_ids()[:2]
        report = a.forget(ids, "influence")
        assert report.details["influence"][0]["retrained"] is True
        assert report.digest == b.forget(ids, "retrain").digest


def test_certified_is_refused_on_an_mlp_and_changes_nothing(trained: Path, tmp_path: Path) -> None:
    with copy(trained, tmp_path / "a") as a:
        before = (a.version, a.digest())
        with pytest.raises(UnsupportedStrategy, match="--model linear"):
            a.forget(a.sample_ids()[:1], "certified")
        with pytest.raises(UnsupportedStrategy, match="--model linear"):
            a.plan(a.sample_ids()[:1], "certified")
        assert (a.version, a.digest()) == before
        assert "certified" not in a.supported_strategies and "influence" in a.supported_strategies
