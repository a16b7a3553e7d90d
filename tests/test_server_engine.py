"""The engine's exactness contract (docs/unlearning.md, sections 5 and 9) on small synthetic data and an Adult subset.

Expected values are computed here from the store's files and the documented rules (batch plans from
`epoch_order`, increments summed in float64 in ascending step order), not by asking the engine again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetd.server.engine import strategies
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import AlreadyForgotten, EmptyRequest, InvalidStrategy, UnknownSample
from forgetd.server.engine.increments import subtract
from forgetd.server.engine.increments_codec import CompressedIncrements, is_compressed
from forgetd.server.engine.model import MLPShape
from forgetd.server.store.rows import RowStore
from forgetd.server.store.layout import Manifest
from forgetd.server.engine.training import OptState, ShardLayout, deterministic, epoch_order, run_steps, step_offsets
from helpers import ADULT_DIR

ADULT = ADULT_DIR

# 500 rows, S = 5 slices of 100 (K = 1), E = 2: cost(i) = 2 * 100 * (i + ... + 5), so cost(5) = 1000,
# cost(4) = 1800, cost(3) = 2400: a budget of 2000 gives m = 2.
CONFIG = EngineConfig(slices=5, epochs=2, epoch_schedule="per-step", batch_size=32, hidden_sizes=(16, 16), budget=2000, seed=7, device="cpu")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("synthetic", n=500, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Path:
    root = tmp_path_factory.mktemp("trained") / "store"
    Engine.train(dataset, CONFIG, root).close()
    return root


@pytest.fixture
def fresh(trained: Path, tmp_path: Path):
    """A private copy of the trained store, opened."""
    dst = tmp_path / "store"
    shutil.copytree(trained, dst)
    engine = Engine.open(dst)
    yield engine
    engine.close()


# -- reading the store's files the way an auditor would ---------------------------------------------------


class StoreView:
    def __init__(self, engine: Engine, dataset: Dataset) -> None:
        self.root = engine.store_dir
        self.cfg = engine.config
        self.m = engine.m
        self.ds = dataset
        with np.load(self.root / "layout.npz") as z:
            self.layouts = [ShardLayout(z[f"members{k}"], z[f"bounds{k}"]) for k in range(self.cfg.shards)]
        self.shape = MLPShape(dataset.num_features, self.cfg.hidden_sizes, dataset.num_classes)

    def manifest(self) -> Manifest:
        return Manifest.read(self.root / "CURRENT.json")

    def params(self, k: int) -> np.ndarray:  # (S+1, P)
        return np.load(self.root / "artifacts" / self.manifest().files[f"shard{k}.params"])

    def optim(self, k: int) -> np.ndarray:
        return np.load(self.root / "artifacts" / self.manifest().files[f"shard{k}.optim"])

    def state(self, k: int, s: int, params: np.ndarray | None = None) -> OptState:
        opt = self.optim(k)
        rows = opt.shape[0] // 2
        p = self.params(k)[s] if params is None else params
        return OptState(torch.from_numpy(p.copy()), torch.from_numpy(opt[s, :-1].copy()),
                        torch.from_numpy(opt[rows + s, :-1].copy()), int(opt[s, -1]))

    def increment(self, k: int, t: int) -> np.ndarray:
        offsets = step_offsets(self.layouts[k], self.cfg.epochs, self.cfg.batch_size)
        s = int(np.searchsorted(offsets, t, side="right")) - 1
        path = self.root / "artifacts" / self.manifest().files[f"shard{k}.step{s}.inc"]
        inc = CompressedIncrements(path) if is_compressed(path) else np.load(path, mmap_mode="r")
        return np.array(inc[t - offsets[s]])

    def where(self, sample_id: str) -> tuple[int, int, int]:
        """(shard, local index, 1-based slice) of a sample."""
        pos = self.ds.train_ids.index(sample_id)
        for k, lay in enumerate(self.layouts):
            hit = np.flatnonzero(lay.members == pos)
            if len(hit):
                local = int(hit[0])
                return k, local, int(np.searchsorted(lay.bounds, local, side="right"))
        raise AssertionError(sample_id)

    def batch_steps(self, sample_id: str, upto: int) -> list[int]:
        """Naive: the optimizer steps of steps slice..upto whose planned batch holds the sample."""
        k, local, sl = self.where(sample_id)
        lay, cfg = self.layouts[k], self.cfg
        offsets = step_offsets(lay, cfg.epochs, cfg.batch_size)
        out = []
        for s in range(sl, upto + 1):
            nb = -(-lay.step_size(s) // cfg.batch_size)
            for e in range(cfg.epochs):
                at = int(np.flatnonzero(epoch_order(lay, cfg.seed, k, s, e) == local)[0])
                out.append(int(offsets[s]) + e * nb + at // cfg.batch_size)
        return out

    def retrain(self, k: int, start: OptState, first: int, forgotten: list[str]) -> np.ndarray:
        """Reference retrain of steps first..S from `start` without `forgotten`; theta_S's parameters."""
        lay = self.layouts[k]
        alive = np.ones(len(lay.members), bool)
        for sid in forgotten:
            kk, local, _ = self.where(sid)
            if kk == k:
                alive[local] = False
        X = torch.from_numpy(self.ds.X_train[lay.members].copy())
        y = torch.from_numpy(self.ds.y_train[lay.members].copy())
        out: dict[int, np.ndarray] = {}
        with deterministic():
            run_steps(shape=self.shape, layout=lay, X=X, y=y, alive=alive, start=start, first=first,
                      seed=self.cfg.seed, shard=k, epochs=self.cfg.epochs, batch_size=self.cfg.batch_size,
                      learning_rate=self.cfg.learning_rate, record_upto=0,
                      on_step=lambda s, st: out.__setitem__(s, st.params.numpy().copy()))
        return out[lay.slices]


def in_slice(view: StoreView, sl: int, k: int = 0, skip: int = 0) -> str:
    # Three-digit ids only: no id is a prefix of another, so a byte search for one finds only that one.
    hits = [sid for sid in view.ds.train_ids[100:] if view.where(sid)[0] == k and view.where(sid)[2] == sl]
    return hits[skip]


def sum_f64(rows: list[np.ndarray], p: int) -> np.ndarray:
    acc = np.zeros(p, np.float64)
    for r in rows:
        acc += r
    return acc


# -- 1. SISA is exact; training is reproducible; shards are independent ---------------------------------


def test_sisa_forget_is_bitwise_equal_to_retrain_from_scratch(fresh: Engine, dataset: Dataset, tmp_path: Path) -> None:
    view = StoreView(fresh, dataset)
    d = in_slice(view, 3)
    copy = tmp_path / "copy"
    shutil.copytree(fresh.store_dir, copy)
    before = fresh.digest()
    sisa = fresh.forget([d], "sisa")
    with Engine.open(copy) as other:
        gold = other.forget([d], "retrain")
    assert sisa.digest == gold.digest
    assert sisa.samples[0].guarantee == "exact" and sisa.samples[0].slice == 3
    # SISA reads only steps 3..5; RETRAIN reads all of them.
    assert 0 < sisa.samples_read < gold.samples_read
    assert sisa.digest != before  # the retrain really changed the model


def test_retrain_strategy_equals_reference_training_without_the_sample(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    d = in_slice(view, 1)
    expected = view.retrain(0, view.state(0, 0), 1, [d])
    fresh.forget([d], "retrain")
    assert np.array_equal(view.params(0)[-1], expected)


def test_same_config_and_data_train_to_the_same_digests(trained: Path, dataset: Dataset, tmp_path: Path) -> None:
    with Engine.open(trained) as first, Engine.train(dataset, CONFIG, tmp_path / "again") as second:
        assert second.digest() == first.digest()
        g1, g2 = first.genesis_record(), second.genesis_record()
        g1["artifacts"].pop("refs"), g2["artifacts"].pop("refs")  # keyed by each store's own random key
        assert g1["model"] == g2["model"] and g1["artifacts"] == g2["artifacts"]
    other_seed = EngineConfig(**{**CONFIG.__dict__, "seed": 8})
    with Engine.train(dataset, other_seed, tmp_path / "seed8") as third:
        assert third.digest() != second.digest()


def test_sisa_with_shards_retrains_only_the_affected_shard(dataset: Dataset, tmp_path: Path) -> None:
    cfg = EngineConfig(shards=3, slices=3, epochs=1, epoch_schedule="per-step", batch_size=32, hidden_sizes=(8,), budget=0, seed=1)
    with Engine.train(dataset, cfg, tmp_path / "k3") as engine:
        before = engine.shard_digests()
        d = engine.sample_ids()[10]
        k = engine.plan([d]).samples[0].shard
        result = engine.forget([d], "sisa")
        after = list(result.shard_digests)
        assert after[k] != before[k]
        assert [a for i, a in enumerate(after) if i != k] == [b for i, b in enumerate(before) if i != k]
        assert result.samples_read > 0


# -- 2. DPUS subtracts exactly the recorded increments, each step once -------------------------------------


def test_dpus_subtracts_each_recorded_step_once(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    S, m = CONFIG.slices, fresh.m
    d1 = in_slice(view, 1)
    steps1 = sorted(set(view.batch_steps(d1, S - m)))
    assert len(steps1) == CONFIG.epochs * (S - m)
    theta = view.params(0)[-1]
    incs = {t: view.increment(0, t) for t in steps1}
    result = fresh.forget([d1], "dpus")
    expected = (theta.astype(np.float64) - sum_f64([incs[t] for t in steps1], theta.size)).astype(np.float32)
    assert np.array_equal(view.params(0)[-1], expected)
    # Steps S-m+1..S held d1 too but were never recorded: that is the residue, stated.
    assert result.residue_steps == len(set(view.batch_steps(d1, S))) - len(steps1) == CONFIG.epochs * m
    assert result.guarantee == "approximate" and result.samples_read == 0

    # A second sample sharing a batch with d1: that shared increment is already gone, so it is not
    # subtracted a second time.
    d2 = next(sid for sid in fresh.sample_ids()
              if view.where(sid)[2] <= S - m and set(view.batch_steps(sid, S - m)) & set(steps1))
    steps2 = sorted(set(view.batch_steps(d2, S - m)) - set(steps1))
    theta = view.params(0)[-1]
    fresh.forget([d2], "dpus")
    expected = (theta.astype(np.float64) - sum_f64([view.increment(0, t) for t in steps2], theta.size)).astype(np.float32)
    assert np.array_equal(view.params(0)[-1], expected)


# -- 3. The cost model and the hybrid's routing -------------------------------------------------------------


@pytest.mark.parametrize("budget", [0, 999, 1000, 1799, 1800, 2000, 2400, 3000, 10**6])
def test_threshold_follows_equation_1(dataset: Dataset, tmp_path: Path, budget: int) -> None:
    cfg = EngineConfig(slices=5, epochs=2, epoch_schedule="per-step", batch_size=64, hidden_sizes=(4,), budget=budget)
    n, S, E = len(dataset.train_ids), cfg.slices, cfg.epochs
    # Equation (1) with E epochs per step: retraining from slice i reads E * sum_{s=i..S} s * n / S.
    fits = [i for i in range(1, S + 1) if E * sum(s * n // S for s in range(i, S + 1)) <= budget]
    expected_m = S - min(fits) + 1 if fits else 0
    with Engine.train(dataset, cfg, tmp_path / "s") as engine:
        assert engine.m == expected_m
        files = Manifest.read(engine.store_dir / "CURRENT.json").files
        recorded = sorted(int(name.split(".")[1][4:]) for name in files if name.endswith(".inc"))
        assert recorded == list(range(1, S - expected_m + 1))
        on_disk = sorted(p.name for p in (engine.store_dir / "artifacts").glob("*.inc.*"))
        assert len(on_disk) == S - expected_m
        assert engine.increments_bytes == sum(p.stat().st_size for p in (engine.store_dir / "artifacts").glob("*.inc.*"))


def test_hs_sends_update_region_to_dpus_and_retrain_region_to_sisa(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    S, m = CONFIG.slices, fresh.m
    assert m == 2
    early, late = in_slice(view, 2), in_slice(view, S)
    plan = fresh.plan([early, late], "hs")
    assert [(e.region, e.strategy, e.guarantee) for e in plan.samples] == [
        ("update", "dpus", "approximate"), ("retrain", "sisa", "exact")]
    assert plan.estimated_samples_read == CONFIG.epochs * 500  # step S alone, all 500 rows
    # Applied together: DPUS of `early` on every checkpoint before S, then SISA of step S without both.
    steps = sorted(set(view.batch_steps(early, S - m)))
    cum = sum_f64([view.increment(0, t) for t in steps], view.shape.num_params)
    start = view.state(0, S - 1, (view.params(0)[S - 1].astype(np.float64) - cum).astype(np.float32))
    expected = view.retrain(0, start, S, [early, late])
    result = fresh.forget([early, late], "auto")
    assert result.strategy == "hs"
    assert np.array_equal(view.params(0)[-1], expected)
    # early held a batch in each epoch of step S-1 (= S-m+1), never recorded nor retrained.
    assert result.residue_steps == CONFIG.epochs * (m - 1)


# -- 4. OHS ---------------------------------------------------------------------------------------------------


def test_ohs_subtracts_up_to_s_minus_m_and_retrains_the_rest(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    S, m = CONFIG.slices, fresh.m
    d = in_slice(view, 2)
    steps = sorted(set(view.batch_steps(d, S - m)))
    before = view.params(0)
    offsets = step_offsets(view.layouts[0], CONFIG.epochs, CONFIG.batch_size)
    corrected = {}
    for s in range(1, S - m + 1):
        mine = [t for t in steps if t < offsets[s + 1]]
        delta = sum_f64([view.increment(0, t) for t in mine], before.shape[1])
        corrected[s] = (before[s].astype(np.float64) - delta).astype(np.float32)
    expected = view.retrain(0, view.state(0, S - m, corrected[S - m]), S - m + 1, [d])
    result = fresh.forget([d], "ohs")
    after = view.params(0)
    assert np.array_equal(after[-1], expected)
    for s in range(1, S - m + 1):
        assert np.array_equal(after[s], corrected[s]), f"checkpoint {s}"
    assert result.samples_read == CONFIG.epochs * (400 - 1 + 500 - 1)  # steps 4 and 5 without d
    assert result.residue_steps == 0 and result.guarantee == "approximate"
    assert result.samples[0].strategy == "ohs"


# -- 5. Composition: a retrain never brings back what DPUS removed ----------------------------------------


def test_dpus_then_sisa_restarts_from_a_corrected_checkpoint(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    S, m = CONFIG.slices, fresh.m
    d1, d2 = in_slice(view, 1), in_slice(view, 3)
    steps1 = sorted(set(view.batch_steps(d1, S - m)))
    offsets = step_offsets(view.layouts[0], CONFIG.epochs, CONFIG.batch_size)
    theta2 = view.params(0)[2]
    in_theta2 = [t for t in steps1 if t < offsets[3]]
    delta = sum_f64([view.increment(0, t) for t in in_theta2], theta2.size)
    corrected2 = (theta2.astype(np.float64) - delta).astype(np.float32)
    expected = view.retrain(0, view.state(0, 2, corrected2), 3, [d1, d2])

    fresh.forget([d1], "dpus")
    assert np.array_equal(view.params(0)[2], corrected2)
    fresh.forget([d2], "sisa")
    assert np.array_equal(view.params(0)[-1], expected)


def test_without_the_checkpoint_correction_dpus_then_sisa_brings_the_sample_back(
    fresh: Engine, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The regression guard: the composition test above must notice when the correction is skipped."""
    view = StoreView(fresh, dataset)
    d1, d2 = in_slice(view, 1), in_slice(view, 3)
    stale = view.retrain(0, view.state(0, 2), 3, [d1, d2])  # restarts from theta_2 that still holds d1

    def only_the_live_checkpoint(ckpt, sums, start):  # the naive DPUS: theta_S corrected, theta_1..S-1 not
        S = len(ckpt.params) - 1
        if S in sums and S < start:
            ckpt.params[S] = subtract(ckpt.params[S], sums[S])

    monkeypatch.setattr(strategies, "correct_checkpoints", only_the_live_checkpoint)
    fresh.forget([d1], "dpus")
    fresh.forget([d2], "sisa")
    assert np.array_equal(view.params(0)[-1], stale)  # exactly the leak the correction prevents


# -- 6. Erasure -------------------------------------------------------------------------------------------------


def _store_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_forgotten_row_is_gone_from_every_file(fresh: Engine, dataset: Dataset) -> None:
    view = StoreView(fresh, dataset)
    d = in_slice(view, 4)
    row = dataset.X_train[dataset.train_ids.index(d)].astype("<f4").tobytes()
    assert row in _store_bytes(fresh.store_dir)
    fresh.forget([d], "hs")
    blob = _store_bytes(fresh.store_dir)
    assert row not in blob
    assert d.encode() not in blob
    assert not fresh.has_sample(d) and d not in fresh.sample_ids()
    with RowStore.open(fresh.store_dir / "rows.sqlite") as rows:
        with pytest.raises(UnknownSample):
            rows.load([d])
    with pytest.raises(AlreadyForgotten):
        fresh.forget([d])


def test_no_later_retrain_sees_a_forgotten_row(fresh: Engine, dataset: Dataset, tmp_path: Path) -> None:
    view = StoreView(fresh, dataset)
    d = in_slice(view, 1)
    fresh.forget([d], "dpus")
    fresh.close()
    reopened = Engine.open(view.root)
    reopened.forget([in_slice(view, 5)], "retrain")
    expected = view.retrain(0, view.state(0, 0), 1, [d, in_slice(view, 5)])
    assert np.array_equal(view.params(0)[-1], expected)
    reopened.close()


# -- 7. Determinism of forgetting -------------------------------------------------------------------------------


def test_same_requests_on_two_copies_give_equal_digests(trained: Path, dataset: Dataset, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained, a)
    shutil.copytree(trained, b)
    ids = Engine.open(trained).sample_ids()
    requests = [([ids[3]], "dpus"), ([ids[40], ids[41]], "hs"), ([ids[100]], "ohs"), ([ids[7]], "sisa"),
                ([ids[200], ids[9]], "auto"), ([ids[300]], "retrain")]
    with Engine.open(a) as ea, Engine.open(b) as eb:
        for i, (req, strategy) in enumerate(requests):
            ra = ea.forget(req, strategy, request_ids=[f"r{i}"])
            if i == 2:  # a restart in the middle changes nothing
                eb.close()
                eb = Engine.open(b)
            rb = eb.forget(req, strategy, request_ids=[f"r{i}"])
            assert (ra.digest, ra.shard_digests, ra.residue_steps) == (rb.digest, rb.shard_digests, rb.residue_steps)
        assert ea.version == eb.version == len(requests)
        assert ea.live_batch is not None and ea.live_batch.request_ids == ("r5",)
        assert ea.live_batch == eb.live_batch
        eb.close()


# -- bad requests change nothing --------------------------------------------------------------------------------


def test_bad_requests_are_clear_errors_that_change_nothing(fresh: Engine) -> None:
    manifest = (fresh.store_dir / "CURRENT.json").read_bytes()
    digest, present = fresh.digest(), fresh.sample_ids()
    with pytest.raises(EmptyRequest):
        fresh.forget([])
    with pytest.raises(UnknownSample, match="'nobody'"):
        fresh.forget([present[0], "nobody"])
    with pytest.raises(InvalidStrategy, match="choose one of"):
        fresh.forget([present[0]], "fast")
    with pytest.raises(UnknownSample):
        fresh.plan(["nobody"])
    assert (fresh.store_dir / "CURRENT.json").read_bytes() == manifest
    assert fresh.digest() == digest and fresh.sample_ids() == present and fresh.version == 0


# -- Adult ----------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (ADULT / "adult.data").is_file(), reason=f"UCI Adult not found at {ADULT}")
def test_adult_subset_sisa_is_exact_and_dpus_subtracts(tmp_path: Path) -> None:
    ds = load_dataset("adult", ADULT).subset(1500, 300)
    cfg = EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(32, 32), batch_size=128, budget=1500, seed=2)
    engine = Engine.train(ds, cfg, tmp_path / "adult")
    assert engine.m == 1 and engine.evaluate() > 0.7
    view = StoreView(engine, ds)
    d = in_slice(view, 2)
    shutil.copytree(engine.store_dir, tmp_path / "gold")
    sisa = engine.forget([d], "sisa")
    with Engine.open(tmp_path / "gold") as gold:
        assert gold.forget([d], "retrain").digest == sisa.digest
    d2 = in_slice(view, 1)
    steps = sorted(set(view.batch_steps(d2, cfg.slices - engine.m)))
    theta = view.params(0)[-1]
    expected = (theta.astype(np.float64) - sum_f64([view.increment(0, t) for t in steps], theta.size)).astype(np.float32)
    engine.forget([d2], "dpus")
    assert np.array_equal(view.params(0)[-1], expected)
    engine.close()
