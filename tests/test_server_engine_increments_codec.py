"""The zstd codec of the increments files: each precision's rows decode to the .npy file's bytes, rows read in
any order, DPUS/HS/OHS forgets give the same digests with or without it, stores without the setting read as
"none", a truncated, corrupted or unfinished file is a StoreError naming it, a full disk is NoSpace with no file
left, and a bad value is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import drop_config_field, mounted_tmpfs, train_small_store
from forgetd.server.cli.train import train
from forgetd.server.config import EngineConfig
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.increments import ShardIncrements, create_increments
from forgetd.server.engine.increments_codec import (
    CompressedIncrements,
    CompressedWriter,
    content_sha256,
    is_compressed,
    row_writer,
)
from forgetd.server.engine.quantised import quantise
from forgetd.server.engine.training import make_layout
from forgetd.server.errors import InvalidConfig, NoSpace, StoreError
from forgetd.server.store.layout import Manifest, StorePaths

# batch_size 2: steps of up to ~230 optimizer steps, so the recorder's chunks of 64 rows are crossed.
CHUNKY = dict(epoch_schedule="per-step", epochs=2, batch_size=2)
PRECISIONS = ("float32", "float16", "int8")


def increments_files(store: Path) -> dict[str, Path]:
    paths = StorePaths(store)
    files = Manifest.read(paths.manifest).files
    return {logical: paths.artifact(name) for logical, name in sorted(files.items()) if logical.endswith(".inc")}


def stored(values: np.ndarray, precision: str) -> np.ndarray:
    """float32 rows as the recorder stores them in `precision`."""
    if precision == "int8":
        return quantise(values)
    return values.astype(np.float16) if precision == "float16" else values


def write_file(path: Path, rows: np.ndarray, precision: str, codec: str, chunk: int = 5) -> None:
    """`rows` (stored form) written as the recorder writes them: in chunks, then finished."""
    num_params = rows["q"].shape[1] if precision == "int8" else rows.shape[1]
    out = row_writer(create_increments(path, len(rows), num_params, precision, codec))
    for base in range(0, len(rows), chunk):
        out.write(base, rows[base : base + chunk])
    out.finish()


def step_rows(rows: int = 23, params: int = 9) -> np.ndarray:
    values = np.random.default_rng(1).standard_normal((rows, params)).astype(np.float32) * np.float32(1e-3)
    values[3] = 0  # an emptied batch's row
    return values


# -- the format -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_decodes_to_the_npy_files_bytes(tmp_path: Path, precision: str) -> None:
    rows = stored(step_rows(), precision)
    write_file(tmp_path / "plain.npy", rows, precision, "none")
    write_file(tmp_path / "packed.npy", rows, precision, "zstd")
    assert is_compressed(tmp_path / "packed.npy") and not is_compressed(tmp_path / "plain.npy")
    plain, packed = np.load(tmp_path / "plain.npy"), CompressedIncrements(tmp_path / "packed.npy")
    assert packed.shape == plain.shape and packed.dtype == plain.dtype and len(packed) == len(plain)
    for r in range(len(plain)):
        assert packed.raw(r) == plain[r].tobytes(), r
    assert content_sha256(tmp_path / "plain.npy") != content_sha256(tmp_path / "packed.npy")  # .npy: its bytes


@pytest.mark.parametrize("precision", PRECISIONS)
def test_rows_read_in_any_order_through_the_shard_reader(tmp_path: Path, precision: str) -> None:
    (lay,) = make_layout([f"s{i}" for i in range(40)], 1, 2, seed=0)
    readers = {codec: ShardIncrements(lay, 3, 4, record_upto=1) for codec in ("none", "zstd")}
    n = int(readers["none"].offsets[2] - readers["none"].offsets[1])
    rows = stored(step_rows(n), precision)
    for codec, incs in readers.items():
        write_file(tmp_path / f"{codec}.npy", rows, precision, codec)
        incs.attach(1, tmp_path / f"{codec}.npy")
    order = np.random.default_rng(2).permutation(n)
    for t in order:
        a, b = readers["none"].row(int(t)), readers["zstd"].row(int(t))
        assert a.dtype == b.dtype and np.array_equal(a, b), t
    ts = np.sort(order[: n // 2])
    sums = [incs.cumulative(ts, 9) for incs in readers.values()]
    assert sums[0].keys() == sums[1].keys() and all(np.array_equal(sums[0][s], sums[1][s]) for s in sums[0])


def test_the_content_digest_ignores_the_level_and_sees_every_row(tmp_path: Path) -> None:
    rows = stored(step_rows(), "float16")
    for name, level in (("a", 1), ("b", 9)):
        out = CompressedWriter(tmp_path / name, len(rows), 9, "float16", level=level)
        out.write(0, rows)
        out.finish()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()
    assert content_sha256(tmp_path / "a") == content_sha256(tmp_path / "b")
    changed = rows.copy()
    changed[7, 2] += np.float16(1)
    write_file(tmp_path / "c", changed, "float16", "zstd")
    assert content_sha256(tmp_path / "c") != content_sha256(tmp_path / "a")


# -- damage -----------------------------------------------------------------------------------------------------


def test_a_truncated_corrupted_or_unfinished_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    rows = stored(step_rows(), "int8")
    write_file(tmp_path / "whole", rows, "int8", "zstd")
    data = (tmp_path / "whole").read_bytes()
    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(StoreError, match=f"{tmp_path / 'short'}: damaged compressed increments"):
        CompressedIncrements(tmp_path / "short")
    (tmp_path / "header").write_bytes(data[:20])
    with pytest.raises(StoreError, match="shorter than its header"):
        CompressedIncrements(tmp_path / "header")
    bad = bytearray(data)
    bad[-20] ^= 0xFF  # inside the last row's frame
    (tmp_path / "flipped").write_bytes(bytes(bad))
    flipped = CompressedIncrements(tmp_path / "flipped")
    assert np.array_equal(flipped[0], CompressedIncrements(tmp_path / "whole")[0])  # other rows still read
    with pytest.raises(StoreError, match=f"{tmp_path / 'flipped'}: damaged compressed increments \\(row 22"):
        flipped[len(rows) - 1]
    with pytest.raises(StoreError, match="damaged compressed increments"):
        content_sha256(tmp_path / "flipped")
    unfinished = CompressedWriter(tmp_path / "unfinished", len(rows), 9, "int8")
    unfinished.write(0, rows[:10])
    with pytest.raises(StoreError, match="a file never finished"):
        CompressedIncrements(tmp_path / "unfinished")
    with pytest.raises(ValueError, match="10 of 23 rows written"):
        unfinished.finish()
    (lay,) = make_layout([f"s{i}" for i in range(40)], 1, 2, seed=0)
    with pytest.raises(StoreError, match=f"{tmp_path / 'short'}"):
        ShardIncrements(lay, 1, 10, record_upto=1).attach(1, tmp_path / "short")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted after the test."""
    with mounted_tmpfs(tmp_path / "fs", 4 << 20) as mount:
        yield mount


def test_a_full_disk_is_no_space_and_leaves_no_file(small_fs: Path) -> None:
    noise = np.random.default_rng(3).integers(0, 2**16, (100, 50_000), dtype=np.uint16).view(np.float16)  # 10 MB
    out = row_writer(create_increments(small_fs / "big.npy", len(noise), 50_000, "float16", "zstd"))
    with pytest.raises(NoSpace, match=f"no space left on the device of {small_fs}"):
        for base in range(0, len(noise), 10):
            out.write(base, noise[base : base + 10])
    assert list(small_fs.iterdir()) == []


# -- the engine -------------------------------------------------------------------------------------------------


def test_forgets_give_the_same_digests_with_or_without_the_codec(tmp_path: Path) -> None:
    stores = {codec: train_small_store(tmp_path / codec, increments="float16", increments_codec=codec, **CHUNKY)
              for codec in ("none", "zstd")}
    assert all(is_compressed(p) for p in increments_files(stores["zstd"]).values())
    assert not any(is_compressed(p) for p in increments_files(stores["none"]).values())
    digests: dict[str, list[str]] = {}
    for codec, store in stores.items():
        with Engine.open(store, device="cpu") as engine:
            assert engine.config.increments_codec == codec
            digests[codec] = [engine.digest()]
            for ids, strategy in ((["synthetic:3", "synthetic:17"], "dpus"), (["synthetic:40"], "hs"),
                                  (["synthetic:60", "synthetic:90"], "ohs"), (["synthetic:101", "synthetic:222"], "sisa"),
                                  (["synthetic:5"], "dpus")):
                report = engine.forget(ids, strategy)
                digests[codec].append(report.digest)
    assert digests["none"] == digests["zstd"] and len(set(digests["none"])) > 1
    plain, packed = increments_files(stores["none"]), increments_files(stores["zstd"])
    assert plain.keys() == packed.keys()
    assert any(".v0." not in p.name for p in packed.values())  # SISA retrained recorded steps: new files
    for logical in plain:
        a, b = np.load(plain[logical]), CompressedIncrements(packed[logical])
        assert all(b.raw(r) == a[r].tobytes() for r in range(len(a))), logical
    genesis = json.loads(StorePaths(stores["zstd"]).genesis.read_text())
    assert genesis["config"]["increments_codec"] == "zstd"


def test_a_store_without_the_setting_reads_as_none(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "s", increments_codec="none")
    drop_config_field(store, "increments_codec")  # what a store trained before the setting holds
    with Engine.open(store, device="cpu") as engine:
        assert engine.config.increments_codec == "none"
        engine.forget(["synthetic:5", "synthetic:200"], "ohs")
    assert not any(is_compressed(p) for p in increments_files(store).values())
    assert EngineConfig.from_json_dict({"slices": 3}).increments_codec == "none"
    assert EngineConfig().increments_codec == "zstd"


def test_a_bad_codec_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="increments_codec is 'lz4'; choose one of none, zstd"):
        EngineConfig(increments_codec="lz4")
    result = CliRunner().invoke(train, ["--data", "synthetic", "--rows", "100", "--store", str(tmp_path / "s"),
                                        "--increments-codec", "gzip"])
    assert result.exit_code == 2
    assert "Invalid value for '--increments-codec'" in result.output and "'none', 'zstd'" in result.output
    assert not (tmp_path / "s").exists()
