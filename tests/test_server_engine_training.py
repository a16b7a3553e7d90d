"""Training's building blocks: config, derived seeds, keyed-hash shards, slices, batch plans, the index, eq. 1,
and the `forgetd train` command."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.config import EngineConfig
from forgetd.server.errors import InvalidConfig
from forgetd.server.engine.model import MLPShape, forward, init_params
from forgetd.server.cli.train import train
from forgetd.server.engine.training import (
    assign_shards,
    build_index,
    cost,
    default_budget,
    derive_seed,
    epoch_order,
    make_layout,
    step_offsets,
    threshold,
)

# -- config ---------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers() -> None:
    c = EngineConfig()
    assert (c.shards, c.batch_size, c.learning_rate, c.hidden_sizes) == (1, 128, 0.005, (128, 128))
    assert c.default_strategy == "hs" and c.aggregation == "mean" and c.device == "auto"


def test_config_json_has_no_floats_and_round_trips() -> None:
    c = EngineConfig(shards=2, slices=7, learning_rate=0.001, hidden_sizes=(64, 32), budget=900, default_strategy="ohs")
    data = c.to_json_dict()
    assert data["learning_rate"] == "0.001" and data["hidden_sizes"] == [64, 32]
    assert not any(isinstance(v, float) for v in data.values())
    assert EngineConfig.from_json_dict(json.loads(json.dumps(data))) == c


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shards": 0}, "shards is 0; use at least 1"),
        ({"slices": 0}, "slices is 0"),
        ({"epochs": 0}, "epochs is 0"),
        ({"batch_size": 0}, "batch_size is 0"),
        ({"learning_rate": -1.0}, "learning_rate is -1.0; give a positive number"),
        ({"hidden_sizes": ()}, "hidden_sizes is ()"),
        ({"budget": -5}, "budget is -5"),
        ({"default_strategy": "sisa"}, "default_strategy is 'sisa'; choose one of hs, ohs"),
        ({"aggregation": "max"}, "aggregation is 'max'"),
        ({"device": "tpu"}, "device is 'tpu'"),
        ({"slices": 2.5}, "slices is 2.5; give a whole number"),
    ],
)
def test_config_rejects_bad_values_with_a_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message.replace("(", r"\(").replace(")", r"\)")):
        EngineConfig(**kwargs)


def test_config_from_json_rejects_unknown_keys() -> None:
    with pytest.raises(InvalidConfig, match="unknown config key"):
        EngineConfig.from_json_dict({"slice": 3})


# -- seeds, shards, slices ----------------------------------------------------------------------------------


def test_derived_seeds_are_fixed_and_distinct() -> None:
    # Pinned: a change here changes every digest of every store.
    text = "forgetd.seed.v1:0:batches:0:1:0"
    assert derive_seed(0, "batches", 0, 1, 0) == int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
    seeds = {derive_seed(0, "batches", 0, s, e) for s in range(1, 11) for e in range(5)}
    assert len(seeds) == 50


def test_shards_are_a_keyed_hash_of_the_id_independent_of_order() -> None:
    ids = [f"user-{i}" for i in range(2000)]
    owner = assign_shards(ids, 4, seed=3)
    key = hashlib.sha256(b"forgetd.shard-key.v1:3").digest()
    assert owner[17] == int.from_bytes(hmac.new(key, b"user-17", hashlib.sha256).digest()[:8], "big") % 4
    assert dict(zip(ids, owner)) == dict(zip(ids[::-1], assign_shards(ids[::-1], 4, seed=3)))
    counts = np.bincount(owner, minlength=4)
    assert counts.min() > 400  # roughly even
    assert not np.array_equal(owner, assign_shards(ids, 4, seed=4))  # the seed keys the hash


def test_slices_partition_each_shard_in_a_recorded_order() -> None:
    ids = [f"s{i}" for i in range(103)]
    layouts = make_layout(ids, 2, 5, seed=0)
    members = np.concatenate([lay.members for lay in layouts])
    assert sorted(members.tolist()) == list(range(103))
    for lay in layouts:
        sizes = np.diff(lay.bounds)
        assert sizes.max() - sizes.min() <= 1 and lay.bounds[-1] == len(lay.members)
        assert lay.slice_of(0) == 1 and lay.slice_of(len(lay.members) - 1) == 5
    again = make_layout(ids, 2, 5, seed=0)
    assert all(np.array_equal(a.members, b.members) for a, b in zip(layouts, again))


def test_batch_plans_are_seeded_per_shard_step_and_epoch() -> None:
    (lay,) = make_layout([f"s{i}" for i in range(100)], 1, 4, seed=0)
    a = epoch_order(lay, 0, 0, 3, 1)
    assert sorted(a.tolist()) == list(range(lay.step_size(3)))  # a permutation of step 3's members
    assert np.array_equal(a, epoch_order(lay, 0, 0, 3, 1))
    assert not np.array_equal(a, epoch_order(lay, 0, 0, 3, 2))
    assert not np.array_equal(a, epoch_order(lay, 1, 0, 3, 1))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 120), slices=st.integers(1, 4), epochs=st.integers(1, 3), batch=st.integers(1, 40))
def test_the_index_matches_the_batch_plans(n: int, slices: int, epochs: int, batch: int) -> None:
    (lay,) = make_layout([f"s{i}" for i in range(n)], 1, slices, seed=9)
    indptr, steps = build_index(lay, 9, 0, epochs, batch)
    offsets = step_offsets(lay, epochs, batch)
    naive: dict[int, list[int]] = {j: [] for j in range(n)}
    for s in range(1, slices + 1):
        nb = -(-lay.step_size(s) // batch)
        for e in range(epochs):
            for pos, j in enumerate(epoch_order(lay, 9, 0, s, e)):
                naive[int(j)].append(int(offsets[s]) + e * nb + pos // batch)
    for j in range(n):
        assert steps[indptr[j] : indptr[j + 1]].tolist() == sorted(naive[j])
    assert offsets[-1] == sum(epochs * -(-lay.step_size(s) // batch) for s in range(1, slices + 1))


# -- the cost model (equation 1) -----------------------------------------------------------------------------


@pytest.mark.parametrize("n, S, E", [(1000, 10, 1), (1000, 10, 3), (480, 4, 2)])
def test_threshold_is_equation_1(n: int, S: int, E: int) -> None:
    sizes = [s * n // S for s in range(1, S + 1)]  # cumulative: step s reads slices 1..s
    for budget in range(0, E * n * (S + 1) // 2 + 2 * n, n // 7):
        # The largest m with E * sum_{s=S-m+1..S} s * n / S <= budget.
        expected = max([m for m in range(0, S + 1) if E * sum(s * n // S for s in range(S - m + 1, S + 1)) <= budget])
        assert threshold([sizes], E, budget) == expected, budget
    assert cost(sizes, E, 1) == E * n * (S + 1) // 2
    assert threshold([sizes], E, 10**12) == S and threshold([sizes], E, 0) == 0


def test_threshold_fits_every_shard_and_default_budget_is_half_a_retrain() -> None:
    small, large = [10, 20, 30], [20, 40, 60]
    assert threshold([small, large], 1, 60) == 1 and threshold([small], 1, 60) == 3 and threshold([small], 1, 59) == 2
    assert default_budget([small, large], 2) == 2 * 120 // 2
    sizes = [s * 100 for s in range(1, 11)]
    assert threshold([sizes], 5, default_budget([sizes], 5)) == 3  # m = 3 of 10 by default


# -- the model ------------------------------------------------------------------------------------------------


def test_the_flat_mlp_matches_torch_linear_layers() -> None:
    import torch

    shape = MLPShape(5, (7, 6), 3)
    flat = init_params(shape, 11)
    assert flat.shape == (shape.num_params,) == (5 * 7 + 7 + 7 * 6 + 6 + 6 * 3 + 3,)
    assert torch.equal(flat, init_params(shape, 11)) and not torch.equal(flat, init_params(shape, 12))
    assert flat[:35].abs().max() <= 1 / 5**0.5  # nn.Linear's bound for fan_in 5
    nn = torch.nn
    ref = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, ref.parameters())
        x = torch.randn(4, 5)
        assert torch.allclose(forward(shape, flat, x), ref(x), atol=1e-6)


# -- forgetd train ----------------------------------------------------------------------------------------------


def test_train_command_trains_and_summarises(tmp_path: Path) -> None:
    result = CliRunner().invoke(train, ["--data", "synthetic", "--rows", "200", "--store", str(tmp_path / "s"),
                                        "--slices", "4", "--epochs", "1", "--epoch-schedule", "per-step", "--hidden", "8",
                                        "--budget", "200",
                                        "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert "threshold    m=1 (budget 200 samples read)" in result.output
    assert "accuracy" in result.output and "increments" in result.output and "time" in result.output
    assert (tmp_path / "s" / "CURRENT.json").is_file()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--data", "parquet:x"], 2, "Invalid value for --data"),
        (["--data", "synthetic", "--slices", "0"], 1, "Error: slices is 0"),
        (["--data", "synthetic", "--hidden", "a,b"], 2, "give widths separated by commas"),
        (["--data", "npz:/nonexistent.npz"], 1, "Error: "),
    ],
)
def test_train_command_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(train, [*args, "--store", str(tmp_path / "s"), "-q"])
    assert result.exit_code == code and message in result.output, result.output
    assert not (tmp_path / "s").exists()


def test_train_command_has_help() -> None:
    result = CliRunner().invoke(train, ["-h"])
    assert result.exit_code == 0 and "--budget" in result.output and "adult:DIR" in result.output


# -- the training loop against a naive reference ------------------------------------------------------------


def _naive_training(shape, lay, X, y, alive, start, epochs, batch, lr, seed):  # type: ignore[no-untyped-def]
    """Steps 1..S the obvious way: every planned batch, minus its forgotten members, one Adam step each."""
    import torch

    flat = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([flat], lr=lr, foreach=False)
    for s in range(1, lay.slices + 1):
        for e in range(epochs):
            order = epoch_order(lay, seed, 0, s, e).tolist()
            for b in range(0, len(order), batch):
                members = [j for j in order[b : b + batch] if alive[j]]
                if not members:
                    continue
                opt.zero_grad()
                idx = torch.tensor(members)
                torch.nn.functional.cross_entropy(forward(shape, flat, X[idx]), y[idx]).backward()
                opt.step()
    return flat.detach()


def test_run_steps_shrinks_batches_and_skips_emptied_ones_like_the_naive_loop() -> None:
    import torch

    from forgetd.server.engine.training import OptState, deterministic, run_steps

    (lay,) = make_layout([f"s{i}" for i in range(90)], 1, 3, seed=4)
    shape = MLPShape(6, (5,), 3)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(90, 6, generator=gen), torch.randint(0, 3, (90,), generator=gen)
    alive = np.ones(90, bool)
    first_batch = epoch_order(lay, 4, 0, 1, 0)[:10]
    alive[first_batch] = False  # empties step 1's first batch (batch 10)
    alive[[40, 41, 77]] = False
    p0 = init_params(shape, 1)
    zeros = torch.zeros_like(p0)
    states: dict[int, OptState] = {}
    incs: dict[int, np.ndarray] = {}

    def sink(s: int, rows: int) -> np.ndarray:
        incs[s] = np.full((rows, shape.num_params), np.nan, np.float32)
        return incs[s]

    with deterministic():
        read = run_steps(shape=shape, layout=lay, X=X, y=y, alive=alive, start=OptState(p0, zeros, zeros, 0),
                         first=1, seed=4, shard=0, epochs=2, batch_size=10, learning_rate=0.01, record_upto=2,
                         on_step=states.__setitem__, increments=sink)
        expected = _naive_training(shape, lay, X, y, alive, p0, 2, 10, 0.01, 4)
    assert torch.equal(states[3].params, expected)
    assert read == 2 * sum(int(alive[: lay.step_size(s)].sum()) for s in (1, 2, 3))
    assert sorted(incs) == [1, 2] and not np.isnan(incs[1]).any()
    assert not incs[1][0].any()  # the emptied batch: no step, a zero increment
    assert np.allclose(incs[1].sum(0) + incs[2].sum(0), states[2].params.numpy() - p0.numpy(), atol=1e-5)


def test_run_steps_counts_the_short_last_batch_as_read_when_nothing_is_forgotten() -> None:
    import torch

    from forgetd.server.engine.training import OptState, deterministic, run_steps

    (lay,) = make_layout([f"s{i}" for i in range(95)], 1, 3, seed=4)  # steps of 32/64/95 rows: short last batches
    shape = MLPShape(6, (5,), 3)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(95, 6, generator=gen), torch.randint(0, 3, (95,), generator=gen)
    p0 = init_params(shape, 1)
    zeros = torch.zeros_like(p0)
    with deterministic():
        read = run_steps(shape=shape, layout=lay, X=X, y=y, alive=np.ones(95, bool),
                         start=OptState(p0, zeros, zeros, 0), first=1, seed=4, shard=0, epochs=2, batch_size=10,
                         learning_rate=0.01, record_upto=0, on_step=lambda s, st: None, increments=None)
    assert read == 2 * sum(lay.step_size(s) for s in (1, 2, 3))  # each sample once per epoch, not 10 per batch
