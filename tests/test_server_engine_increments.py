"""The stored precision of the recorded increments: float16 is float32 rounded to nearest even and nothing else,
int8 is each row quantised to 127 levels of its own float32 scale, DPUS on a float16 or int8 store replays
bitwise, stores without the setting read as float32, a bad value is refused, and float32 training records the
very bytes it did before the recorder wrote files with pwrite."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import drop_config_field, running_daemon, train_small_store
from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.server.cli.train import train
from forgetd.server.config import EngineConfig
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.increments import ShardIncrements, create_increments
from forgetd.server.engine.quantised import dequantise, int8_rows, quantise
from forgetd.server.engine.training import make_layout
from forgetd.server.errors import InvalidConfig, StoreError
from forgetd.server.store.layout import Manifest, StorePaths

# batch_size 2: steps of up to ~230 optimizer steps, so the recorder's chunks of 64 rows are crossed.
CHUNKY = dict(epoch_schedule="per-step", epochs=2, batch_size=2, increments_codec="none")
NPY = dict(increments_codec="none")  # these tests read the .npy files; the zstd codec's are in its own tests


def increments_files(store: Path) -> dict[str, Path]:
    paths = StorePaths(store)
    files = Manifest.read(paths.manifest).files
    return {logical: paths.artifact(name) for logical, name in sorted(files.items()) if logical.endswith(".inc")}


def increments_digest(store: Path) -> str:
    h = hashlib.sha256()
    for logical, path in increments_files(store).items():
        h.update(logical.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# -- known answer: float32 training and forgetting record what they did before --------------------------------

# Computed on the code before the recorder wrote with pwrite into reused buffers (it then copied 256-row chunks
# into the mapped file): the model digests and the increments files' bytes must not move.
KNOWN = {
    "genesis": "5ab41def83bc24f465225bbd114e1c1ac570fcce3962a003d8311cc6dad3aabf",
    "genesis_increments": "b1ea2d645102a2a46654c645a0ff7d0144ff08602090bece2144cbd29495c248",
    "after_dpus": "4ccebdf43f9ad7bc42041a642f58c2de4aba63923fa3adebed0fe3a730944147",
    "after_sisa": "e429639e8231c1601ee469acbdbceb0b21ae1013b3ba73d7121e77e5718cac13",
    "after_sisa_increments": "8291a79e0efcb13408ab0af6e2a5ccec58e8a16bee74d8d8d482a7260c8fe733",
}


def test_float32_store_has_the_known_digests_and_increments_bytes(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "s", increments="float32", **CHUNKY)
    with Engine.open(store, device="cpu") as engine:
        assert engine.digest() == KNOWN["genesis"]
        assert increments_digest(store) == KNOWN["genesis_increments"]
        engine.forget(["synthetic:3", "synthetic:17"], "dpus")
        assert engine.digest() == KNOWN["after_dpus"]
        engine.forget(["synthetic:101", "synthetic:222"], "sisa")  # retrains recorded steps: new files
        assert engine.digest() == KNOWN["after_sisa"]
        assert increments_digest(store) == KNOWN["after_sisa_increments"]


# -- float16: float32 rounded to nearest even ---------------------------------------------------------------


def test_float16_increments_are_the_float32_ones_rounded_to_nearest_even(tmp_path: Path) -> None:
    full = train_small_store(tmp_path / "f32", increments="float32", **CHUNKY)
    half = train_small_store(tmp_path / "f16", increments="float16", **CHUNKY)
    g32, g16 = (json.loads((s / "genesis.json").read_text()) for s in (full, half))
    assert g16["model"] == g32["model"]  # training itself is untouched by what it records
    assert (g32["config"]["increments"], g16["config"]["increments"]) == ("float32", "float16")
    f32, f16 = increments_files(full), increments_files(half)
    assert f32.keys() == f16.keys() and f32
    for logical in f32:
        a, b = np.load(f32[logical]), np.load(f16[logical])
        assert b.dtype == np.float16 and a.dtype == np.float32 and a.shape == b.shape
        assert np.array_equal(b.view(np.uint16), a.astype(np.float16).view(np.uint16)), logical
    assert g16["increments_bytes"] < 0.51 * g32["increments_bytes"]


def test_a_float16_file_round_trips_through_the_reader(tmp_path: Path) -> None:
    (lay,) = make_layout([f"s{i}" for i in range(40)], 1, 2, seed=0)
    incs = ShardIncrements(lay, 1, 10, record_upto=1)
    rows = int(incs.offsets[2] - incs.offsets[1])
    values = np.random.default_rng(0).standard_normal((rows, 7)).astype(np.float32) * np.float32(1e-3)
    values[0, :3] = [1e-9, 3e-8, -6e-5]  # below float16's subnormals, a subnormal, near the smallest normal
    mm = create_increments(tmp_path / "step1.npy", rows, 7, "float16")
    mm[:] = values
    mm.flush()
    incs.attach(1, tmp_path / "step1.npy")
    want = values.astype(np.float16)
    assert all(np.array_equal(incs.row(t), want[t]) for t in range(rows))
    acc = np.zeros(7, np.float64)
    for row in want:  # the documented order: ascending t, in float64
        acc += row
    assert np.array_equal(incs.cumulative(np.arange(rows), 7)[1], acc)
    np.save(tmp_path / "bad.npy", values.astype(np.float64))
    with pytest.raises(StoreError, match="dtype float64, not float32, float16 or int8 records; the store is damaged"):
        incs.attach(1, tmp_path / "bad.npy")


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_dpus_on_a_rounded_store_replays_bitwise(tmp_path: Path, precision: str) -> None:
    store = train_small_store(tmp_path / "store", increments=precision, **NPY)
    with running_daemon(store) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()[:8]
        for i, sid in enumerate(ids):
            client.forget([sid], strategy="sisa" if i == 5 else "dpus", timeout=120)
    report = audit(store)
    assert report.ok, report.text()
    replay = report.check("replay")
    assert replay.figures["replayed"] == 8 and replay.figures["bitwise"] is True


# -- int8: one float32 scale per row, 127 levels each side ------------------------------------------------------


def test_the_quantiser_on_known_rows() -> None:
    rows = np.array([
        [127.0, 0.5, 1.5, 2.5, -0.5, -2.5, -127.0],  # scale 1: every x.5 is a tie, rounded to the even level
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # all zero: scale 0, levels 0
        [1e6, 3e3, 3.9e3, 4e3, -1e3, 1e-3, 0.0],  # one huge entry: the rest fall to a few levels or to zero
        [x / 256 for x in (-127.0, 63.5, 62.5, 0.5, -1.5, 1.0, 0.0)],  # largest negative: scale 2^-8, ties
    ], np.float32)
    rec = quantise(rows)
    assert rec.dtype == int8_rows(7) and rec.dtype.itemsize == 4 + 7
    assert rec["scale"].dtype == np.float32 and rec["q"].dtype == np.int8
    assert rec["scale"][:2].tolist() == [1.0, 0.0]
    assert rec["q"][0].tolist() == [127, 0, 2, 2, 0, -2, -127]
    assert rec["q"][1].tolist() == [0] * 7
    assert rec["scale"][2] == np.float32(np.float32(1e6) / np.float32(127))
    assert rec["q"][2].tolist() == [127, 0, 0, 1, 0, 0, 0]  # 3e3 / 7874.0156 = 0.38, 3.9e3 -> 0.495, 4e3 -> 0.508
    assert rec["scale"][3] == 2.0**-8 and rec["q"][3].tolist() == [-127, 64, 62, 0, -2, 1, 0]
    want = rec["q"].astype(np.float64) * rec["scale"].astype(np.float64)[:, None]
    assert np.array_equal(dequantise(rec), want) and np.array_equal(dequantise(rec[2]), want[2])
    assert np.all(np.abs(dequantise(rec) - rows) <= rec["scale"][:, None] / 2 * (1 + 1e-6))


def test_an_int8_file_round_trips_through_the_reader(tmp_path: Path) -> None:
    (lay,) = make_layout([f"s{i}" for i in range(40)], 1, 2, seed=0)
    incs = ShardIncrements(lay, 1, 10, record_upto=1)
    rows = int(incs.offsets[2] - incs.offsets[1])
    values = np.random.default_rng(0).standard_normal((rows, 7)).astype(np.float32) * np.float32(1e-3)
    values[1] = 0
    mm = create_increments(tmp_path / "step1.npy", rows, 7, "int8")
    assert mm.shape == (rows,) and mm.dtype == int8_rows(7)
    mm[:] = quantise(values)
    mm.flush()
    assert (tmp_path / "step1.npy").stat().st_size == 128 + rows * 11  # the .npy header, then 4 + P per row
    incs.attach(1, tmp_path / "step1.npy")
    want = dequantise(quantise(values))
    assert all(np.array_equal(incs.row(t), want[t]) for t in range(rows))
    acc = np.zeros(7, np.float64)
    for row in want:  # the documented order: ascending t, in float64
        acc += row
    assert np.array_equal(incs.cumulative(np.arange(rows), 7)[1], acc)
    np.save(tmp_path / "flat.npy", np.zeros((rows, 11), np.int8))  # the bytes of records, but not records
    with pytest.raises(StoreError, match="dtype int8, not float32, float16 or int8 records"):
        incs.attach(1, tmp_path / "flat.npy")


def test_int8_increments_are_the_float32_ones_quantised(tmp_path: Path) -> None:
    full = train_small_store(tmp_path / "f32", increments="float32", **CHUNKY)
    small = train_small_store(tmp_path / "i8", increments="int8", **CHUNKY)
    g32, g8 = (json.loads((s / "genesis.json").read_text()) for s in (full, small))
    assert g8["model"] == g32["model"] and g8["config"]["increments"] == "int8"
    f32, f8 = increments_files(full), increments_files(small)
    assert f32.keys() == f8.keys() and f32
    for logical in f32:
        a, b = np.load(f32[logical]), np.load(f8[logical])
        assert b.dtype == int8_rows(a.shape[1]) and b.shape == a.shape[:1]
        assert b.tobytes() == quantise(a).tobytes(), logical
    assert g8["increments_bytes"] < 0.26 * g32["increments_bytes"]


# -- stores from before the setting, and bad values ------------------------------------------------------------


def test_a_store_without_the_setting_reads_as_float32(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "s", increments="float32", **NPY)
    drop_config_field(store, "increments")  # what a store trained before the setting holds
    with Engine.open(store, device="cpu") as engine:
        assert engine.config.increments == "float32"
        before = engine.digest()
        report = engine.forget(["synthetic:5"], "dpus")
        assert report.digest != before or report.residue_steps > 0
    assert all(np.load(p).dtype == np.float32 for p in increments_files(store).values())
    assert EngineConfig.from_json_dict({"slices": 3}).increments == "float32"


def test_a_bad_precision_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="increments is 'float8'; choose one of float32, float16, int8"):
        EngineConfig(increments="float8")
    with pytest.raises(InvalidConfig, match="increments is 'bf16'"):
        EngineConfig.from_json_dict({"increments": "bf16"})
    result = CliRunner().invoke(train, ["--data", "synthetic", "--rows", "100", "--store", str(tmp_path / "s"),
                                        "--increments", "float8"])
    assert result.exit_code == 2
    assert "Invalid value for '--increments'" in result.output and "'float32', 'float16', 'int8'" in result.output
    assert not (tmp_path / "s").exists()


def test_train_records_the_chosen_precision(tmp_path: Path) -> None:
    result = CliRunner().invoke(train, ["--data", "synthetic", "--rows", "120", "--store", str(tmp_path / "s"),
                                        "--slices", "3", "--epochs", "1", "--epoch-schedule", "per-step",
                                        "--hidden", "8", "--device", "cpu", "--increments", "float32", "--increments-codec", "none",
                                        "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "genesis.json").read_text())["config"]["increments"] == "float32"
    assert all(np.load(p).dtype == np.float32 for p in increments_files(tmp_path / "s").values())


# -- the benchmark's functions (figures are printed by `forgetd bench increments`, never asserted as timings) --


def test_the_bench_functions_report_their_figures(tmp_path: Path) -> None:
    from forgetd.server.bench.increments_bench import precision_error, training_throughput
    from forgetd.server.data import load_dataset

    t = training_throughput(400, 12, 3, 1, "per-step", "float16", codec="none", work_dir=tmp_path)
    rows = sum(-(-(400 * s // 3) // 128) for s in range(1, 3 - t["m"] + 1))  # E_s * batches(s), s <= S-m
    assert t["increments_bytes"] > 0 and t["bytes_per_sample_per_param"] > 0
    assert t["increments_bytes"] >= rows * t["num_params"] * 2  # float16 rows, plus each file's header
    assert t["samples_read"] == 134 + 267 + 400  # one epoch of each cumulative step: slices of 134, 133, 133
    assert all(t[f"us_per_sample_{k}"] > 0 for k in ("build", "loop", "bare_recording", "bare"))
    e = precision_error(load_dataset("synthetic", n=200, seed=0), forgets=3, work_dir=tmp_path, slices=3, epochs=1,
                        epoch_schedule="per-step", hidden_sizes=(8,), batch_size=16)
    assert e["genesis_identical"] is True and 0.45 < e["fraction_saved"] < 0.5  # 128-byte headers aside
    assert e["increments_bytes_float16"] < e["increments_bytes_float32"] and e["l2_distance"] >= 0
    assert e["genesis_identical_int8"] is True and 0.7 < e["fraction_saved_int8"] < 0.75
    assert e["increments_bytes_int8"] < e["increments_bytes_float16"] and e["l2_distance_int8"] >= 0
    assert {"accuracy_int8", "max_abs_distance_int8", "relative_to_dpus_move_int8"} <= e.keys()
    assert list(tmp_path.iterdir()) == []  # the stores are removed
