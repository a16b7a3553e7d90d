"""The epoch schedule (docs/unlearning.md 2.3): per-step (E in every step) and sisa (the SISA reference code's
split of E over the steps). The schedule's epochs per step against the reference formula, the config field and
old stores, the cost model against a naive count of what training reads, and a sisa store that forgets and
verifies bitwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import running_daemon, train_small_store
from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.server.config import EngineConfig
from forgetd.server.data import load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.training import (
    build_index,
    config_epochs,
    cost,
    epoch_order,
    epochs_per_step,
    make_layout,
    num_batches,
    step_offsets,
    threshold,
)
from forgetd.server.errors import InvalidConfig

# -- the schedule --------------------------------------------------------------------------------------------


def reference_sisa_epochs(slices: int, epochs: int) -> list[int]:
    """The SISA reference code's loop (sisa.py), verbatim but for the names."""
    avg_epochs_per_slice = 2 * slices / (slices + 1) * epochs / slices
    out = []
    for sl in range(slices):
        out.append(int((sl + 1) * avg_epochs_per_slice) - int(sl * avg_epochs_per_slice))
    return out


@pytest.mark.parametrize("slices", [1, 2, 3, 5, 8, 10, 11, 20, 40, 64])
def test_sisa_epochs_per_step_are_the_reference_formula(slices: int) -> None:
    for epochs in range(1, 120):
        want = reference_sisa_epochs(slices, epochs)
        if want[-1] == 0:
            with pytest.raises(InvalidConfig, match=f"gives step {slices} no epoch"):
                epochs_per_step(slices, epochs, "sisa")
            continue
        got = epochs_per_step(slices, epochs, "sisa")
        assert list(got) == want, (slices, epochs)
        assert sum(got) == int(slices * (2 * slices / (slices + 1) * epochs / slices))  # about 2E in all


def test_per_step_gives_every_step_e() -> None:
    assert epochs_per_step(4, 3, "per-step") == (3, 3, 3, 3)
    assert config_epochs(EngineConfig(slices=3, epochs=2, epoch_schedule="per-step")) == (2, 2, 2)


def test_a_full_sisa_training_reads_about_e_n_whatever_s() -> None:
    n, E = 10_000, 20
    for S in (5, 10, 20, 40):
        sizes = [s * n // S for s in range(1, S + 1)]
        sisa = cost(sizes, epochs_per_step(S, E, "sisa"), 1)
        assert 0.85 * E * n <= sisa <= 1.05 * E * n, (S, sisa)
        assert cost(sizes, epochs_per_step(S, E, "per-step"), 1) == E * sum(sizes)  # E n (S+1)/2: grows with S


@pytest.mark.parametrize("slices, epochs, least", [(10, 2, 3), (5, 1, 2), (20, 5, 6), (40, 10, 11)])
def test_a_schedule_that_leaves_the_last_slice_untrained_is_refused_with_the_fix(slices: int, epochs: int,
                                                                                 least: int) -> None:
    with pytest.raises(InvalidConfig) as err:
        epochs_per_step(slices, epochs, "sisa")
    assert str(err.value) == (f"epoch_schedule sisa with epochs {epochs} over {slices} slices gives step {slices} "
                              f"no epoch, so slice {slices} would never be trained on; use epochs >= {least}, "
                              "fewer slices, or epoch_schedule per-step")
    assert epochs_per_step(slices, least, "sisa")[-1] >= 1


def test_training_refuses_it_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="use epochs >= 3"):
        Engine.train(load_dataset("synthetic", n=200, seed=0), EngineConfig(slices=10, epochs=2, device="cpu"),
                     tmp_path / "s")
    assert not (tmp_path / "s").exists()


# -- the config field ----------------------------------------------------------------------------------------


def test_the_default_is_sisa_and_it_is_committed() -> None:
    c = EngineConfig()
    assert c.epoch_schedule == "sisa" and c.to_json_dict()["epoch_schedule"] == "sisa"
    assert EngineConfig.from_json_dict(c.to_json_dict()) == c
    with pytest.raises(InvalidConfig, match="epoch_schedule is 'fast'; choose one of sisa, per-step"):
        EngineConfig(epoch_schedule="fast")


def test_a_config_without_the_field_is_an_old_store_and_per_step() -> None:
    old = EngineConfig(epoch_schedule="per-step").to_json_dict()
    del old["epoch_schedule"]
    assert EngineConfig.from_json_dict(old).epoch_schedule == "per-step"


def test_an_old_store_without_the_field_opens_and_forgets_as_per_step(tmp_path: Path) -> None:
    old, new = train_small_store(tmp_path / "old"), train_small_store(tmp_path / "new")  # both per-step
    meta = json.loads((old / "store.json").read_text())
    del meta["config"]["epoch_schedule"]  # what a store trained before the field holds
    (old / "store.json").write_text(json.dumps(meta))
    with Engine.open(old, device="cpu") as a, Engine.open(new, device="cpu") as b:
        assert a.config.epoch_schedule == "per-step"
        ids = a.sample_ids()[:3]
        for sid, strategy in zip(ids, ("sisa", "hs", "ohs")):
            ra, rb = a.forget([sid], strategy), b.forget([sid], strategy)
            assert (ra.digest, ra.samples_read) == (rb.digest, rb.samples_read)


# -- the cost model against a naive count --------------------------------------------------------------------


def naive_reads(layout, seed: int, shard: int, epochs: tuple[int, ...], batch: int, alive: np.ndarray,
                first: int) -> int:
    """Samples a retrain from step `first` passes through an optimizer step: every alive member of every
    planned batch of every epoch the schedule gives each step, counted one by one."""
    read = 0
    for s in range(first, layout.slices + 1):
        for e in range(epochs[s - 1]):
            order = epoch_order(layout, seed, shard, s, e)
            for b in range(num_batches(layout.step_size(s), batch)):
                read += sum(1 for j in order[b * batch:(b + 1) * batch] if alive[j])
    return read


SISA_STORE = dict(slices=5, epochs=2, epoch_schedule="sisa", budget=10**9)  # E_s = 0, 1, 1, 0, 1


def test_the_index_and_offsets_follow_the_schedule() -> None:
    epochs = epochs_per_step(5, 2, "sisa")
    assert epochs == (0, 1, 1, 0, 1)
    (lay,) = make_layout([f"s{i}" for i in range(203)], 1, 5, seed=4)
    offsets = step_offsets(lay, epochs, 16)
    assert np.diff(offsets[1:]).tolist() == [e * num_batches(lay.step_size(s), 16) for s, e in enumerate(epochs, 1)]
    indptr, _ = build_index(lay, 4, 0, epochs, 16)
    for j in range(len(lay.members)):
        assert indptr[j + 1] - indptr[j] == sum(epochs[lay.slice_of(j) - 1:])


def test_training_and_every_retrain_read_what_the_cost_model_counts(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", n=300, seed=2)
    cfg = EngineConfig(**SISA_STORE, batch_size=16, hidden_sizes=(8,), seed=4, device="cpu")
    epochs = config_epochs(cfg)
    with Engine.train(ds, cfg, tmp_path / "s") as eng:
        (lay,) = make_layout(ds.train_ids, 1, 5, seed=4)
        sizes = [lay.step_size(s) for s in range(1, 6)]
        alive = np.ones(len(lay.members), bool)
        assert cost(sizes, epochs, 1) == naive_reads(lay, 4, 0, epochs, 16, alive, 1) == sum(
            e * n for e, n in zip(epochs, sizes))
        for budget in range(0, cost(sizes, epochs, 1) + 50, 17):  # eq. 1 with E_s, against its definition
            assert threshold([sizes], epochs, budget) == max(
                c for c in range(6) if sum(e * n for e, n in zip(epochs[5 - c:], sizes[5 - c:])) <= budget)
        for local in (0, lay.bounds[2], lay.bounds[4]):  # slices 1, 3 and 5
            sid = ds.train_ids[lay.members[local]]
            planned = eng.plan([sid], "sisa").estimated_samples_read  # counts the sample itself as present
            present = [int(alive[: lay.bounds[s]].sum()) for s in range(1, 6)]
            assert planned == cost(present, epochs, lay.slice_of(local))
            alive[local] = False
            assert eng.forget([sid], "sisa").samples_read == naive_reads(lay, 4, 0, epochs, 16, alive,
                                                                         lay.slice_of(local))


# -- a sisa store forgets and verifies bitwise ---------------------------------------------------------------


def test_a_sisa_store_forgets_and_verifies_bitwise(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store", rows=400, slices=5, epochs=2, epoch_schedule="sisa", budget=None)
    with Engine.open(store, device="cpu") as eng:
        assert config_epochs(eng.config) == (0, 1, 1, 0, 1) and 0 < eng.m < 5  # both regions, a 0-epoch step
    strategies = ("hs", "sisa", "dpus", "ohs", "retrain", "auto")
    with running_daemon(store) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()[:18]
        for i in range(18):
            client.forget([ids[i]], strategy=strategies[i % len(strategies)], timeout=120)
    report = audit(store)
    assert report.ok, report.text()
    assert report.check("replay").figures["replayed"] == 18 and report.check("replay").figures["bitwise"] is True


def test_under_sisa_sisa_equals_retrain_bitwise(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", n=300, seed=2)
    cfg = EngineConfig(**SISA_STORE, batch_size=16, hidden_sizes=(8,), seed=4, device="cpu")
    Engine.train(ds, cfg, tmp_path / "a").close()
    Engine.train(ds, cfg, tmp_path / "b").close()
    gone = list(ds.train_ids[5:9])
    with Engine.open(tmp_path / "a", device="cpu") as a, Engine.open(tmp_path / "b", device="cpu") as b:
        for sid in gone:
            a.forget([sid], "sisa")
        b.forget(gone, "retrain")
        assert a.digest() == b.digest()
