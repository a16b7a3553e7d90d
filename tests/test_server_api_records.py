"""Raw records with their schema: a real Adult row (not 108 pre-encoded floats) predicted through forgetd.v1,
the Open Inference Protocol over gRPC (tritonclient.grpc) and over REST (tritonclient.http) is answered
bitwise as its encoded features are; an unknown category is refused naming it (or encoded as zeros when
the store was trained so); `forgetd predict --csv` reads Adult's files as they are; the forget that empties
a category reports it as encoder residue with an APPROXIMATE guarantee, and verify replays it; verify names
a tampered encoder artifact.

Stores are trained on an Adult-format folder made here (records_data.py), and on the real UCI Adult files
when they are present.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from forgetd.client import Client, InvalidArgument
from forgetd.client.audit import audit
from forgetd.client.cli.main import main
from forgetd.client.records import EncoderResidue, read_csv
from forgetd.ledger import Ledger
from forgetd.v1 import inference_service_pb2 as ipb

from helpers import ADULT_DIR, RunningDaemon, running_daemon
from records_data import ADULT_COLUMNS, RARE_COUNTRY, RARE_LINE, cells_of, record_of, write_adult_folder

MODEL = "forgetd"
SMALL = dict(slices=2, epochs=1, hidden_sizes=(8,), batch_size=32, device="cpu")


def _train(folder: Path, store: Path, n_train: int | None = None, **options: object) -> object:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    ds = load_dataset("adult", folder, **options)
    if n_train is not None:
        ds = ds.subset(n_train, 100)
    Engine.train(ds, EngineConfig(**SMALL), store).close()  # type: ignore[arg-type]
    return ds


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """(Adult-format folder, a store trained on it, its Dataset): copy the store, never modify it."""
    root = tmp_path_factory.mktemp("records")
    folder = write_adult_folder(root / "data")
    return folder, root / "store", _train(folder, root / "store")


@pytest.fixture(scope="module")
def served(adult: tuple[Path, Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    store = tmp_path_factory.mktemp("records-served") / "store"
    shutil.copytree(adult[1], store)
    with running_daemon(store, http_listen="127.0.0.1:0") as running:
        yield running


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("|")]


def _encoded(running: RunningDaemon, x: np.ndarray) -> bytes:
    """forgetd.v1 Predict of encoded features: the float32 probabilities' bytes every raw form must give."""
    inference, _ = running.stubs()
    answer = inference.Predict(ipb.PredictRequest(features=x.astype("<f4").tobytes(), rows=x.shape[0], columns=x.shape[1]))
    return np.asarray(answer.probabilities, dtype=np.float32).tobytes()


def _column_inputs(module, lines: list[str], *, binary: bool = True) -> list:
    """One OIP input per Adult column: BYTES for categories; numbers as FP64, and `age` as INT64."""
    inputs = []
    for j, (name, numeric) in enumerate(ADULT_COLUMNS):
        values = [cells_of(ln)[j] for ln in lines]
        if not numeric:
            x, datatype = np.array([v.encode() for v in values], dtype=np.object_), "BYTES"
        elif name == "age":
            x, datatype = np.array([int(v) for v in values], dtype=np.int64), "INT64"
        else:
            x, datatype = np.array([float(v) for v in values], dtype=np.float64), "FP64"
        inp = module.InferInput(name, [len(lines)], datatype)
        inp.set_data_from_numpy(x, **({} if module is tg else {"binary_data": binary}))
        inputs.append(inp)
    return inputs


def test_raw_rows_are_answered_bitwise_as_their_encoded_features_on_every_front(
        served: RunningDaemon, adult: tuple[Path, Path, object]) -> None:
    folder, _, ds = adult
    lines = _lines(folder / "adult.data")[:12] + _lines(folder / "adult.test")[:5]
    x = np.vstack([ds.X_train[:12], ds.X_test[:5]])  # type: ignore[attr-defined]
    want = _encoded(served, x)
    with Client(served.address) as client:
        got = client.predict_records([record_of(ln) for ln in lines])
        as_text = client.predict_records([{n: v for (n, _), v in zip(ADULT_COLUMNS, cells_of(ln))} for ln in lines])
    assert np.asarray(got.probabilities, dtype=np.float32).tobytes() == want
    assert np.asarray(as_text.probabilities, dtype=np.float32).tobytes() == want
    grpc_client = tg.InferenceServerClient(served.address)
    http_client = th.InferenceServerClient(f"127.0.0.1:{served.daemon.http_port}")
    try:
        assert grpc_client.infer(MODEL, _column_inputs(tg, lines)).as_numpy("probabilities").tobytes() == want
        for binary in (True, False):  # Triton's binary extension, and plain JSON
            answer = http_client.infer(MODEL, _column_inputs(th, lines, binary=binary))
            assert answer.as_numpy("probabilities").tobytes() == want
    finally:
        grpc_client.close()
        http_client.close()


def test_an_unknown_category_is_refused_naming_it_on_every_front(served: RunningDaemon,
                                                                  adult: tuple[Path, Path, object]) -> None:
    line = _lines(adult[0] / "adult.data")[0]
    bad = line.replace(cells_of(line)[1], "Atlantis-gov")
    message = "row 0, column 'workclass': unknown category 'Atlantis-gov'"
    with Client(served.address) as client:
        with pytest.raises(InvalidArgument, match=message):
            client.predict_records([record_of(bad)])
        with pytest.raises(InvalidArgument, match="row 0: column 'age' is missing"):
            client.predict_records([{k: v for k, v in record_of(line).items() if k != "age"}])
    grpc_client = tg.InferenceServerClient(served.address)
    http_client = th.InferenceServerClient(f"127.0.0.1:{served.daemon.http_port}")
    try:
        with pytest.raises(InferenceServerException, match=message) as info:
            grpc_client.infer(MODEL, _column_inputs(tg, [bad]))
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException, match=message) as info:
            http_client.infer(MODEL, _column_inputs(th, [bad], binary=False))
        assert info.value.status() == "400"
        with pytest.raises(InferenceServerException, match="input 'workclass' is missing"):
            http_client.infer(MODEL, _column_inputs(th, [line])[:1])
    finally:
        grpc_client.close()
        http_client.close()


def test_get_model_and_the_metadata_describe_the_input_schema(served: RunningDaemon) -> None:
    with Client(served.address) as client:
        schema = client.model().input_schema
    assert schema is not None and schema.column_names == tuple(n for n, _ in ADULT_COLUMNS)
    assert [c.kind for c in schema.columns] == ["numeric" if num else "categorical" for _, num in ADULT_COLUMNS]
    country = schema.columns[-1]
    assert RARE_COUNTRY in country.categories and schema.unknown_category == "error"
    assert schema.columns[0].scale > 0 and schema.columns[1].feature_offset == 1
    store_file = served.store / "encoder.json"
    assert schema.encoder_digest == hashlib.sha256(store_file.read_bytes()).hexdigest()
    genesis = json.loads((served.store / "genesis.json").read_text())
    assert genesis["artifacts"]["encoder"] == schema.encoder_digest
    grpc_client = tg.InferenceServerClient(served.address)
    try:
        meta = grpc_client.get_model_metadata(MODEL, as_json=True)
        assert [i["name"] for i in meta["inputs"]] == ["features", *schema.column_names]
        assert [i["datatype"] for i in meta["inputs"][1:4]] == ["FP64", "BYTES", "FP64"]
        assert grpc_client.get_model_config(MODEL, as_json=True)["config"]["input"][1]["data_type"] == "TYPE_FP64"
    finally:
        grpc_client.close()


def test_a_store_trained_with_zeros_encodes_an_unknown_category_as_zeros(adult: tuple[Path, Path, object],
                                                                         tmp_path: Path) -> None:
    ds = _train(adult[0], tmp_path / "zeros", unknown_category="zeros")
    line = _lines(adult[0] / "adult.data")[0]
    record = {**record_of(line), "workclass": "Atlantis-gov"}
    x = ds.X_train[:1].copy()  # type: ignore[attr-defined]
    x[0, 1:1 + 5] = 0.0  # workclass's five one-hot features
    with running_daemon(tmp_path / "zeros") as running, Client(running.address) as client:
        got = client.predict_records([record])
        assert client.model().input_schema.unknown_category == "zeros"  # type: ignore[union-attr]
        assert np.asarray(got.probabilities, dtype=np.float32).tobytes() == _encoded(running, x)


# ------------------------------------------------------------------------------------------------ the CLI


def _cli_json(address: str, *args: str) -> dict:
    result = CliRunner().invoke(main, ["predict", *args, "--server", address, "--output", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predict_csv_reads_adult_files_as_they_are(served: RunningDaemon, adult: tuple[Path, Path, object],
                                                    tmp_path: Path) -> None:
    folder, _, ds = adult
    x = ds.X_test  # type: ignore[attr-defined]
    encoded = tmp_path / "encoded.csv"
    encoded.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in x))
    want = _cli_json(served.address, "--csv", str(encoded))["probabilities"]
    assert _cli_json(served.address, "--csv", str(folder / "adult.test"))["probabilities"] == want  # labels dropped
    names = [n for n, _ in ADULT_COLUMNS]
    header = tmp_path / "header.csv"  # named columns in another order, plus an id and the label
    order = names[::-1]
    header.write_text("id," + ",".join(order) + ",income\n" + "".join(
        f"r{i}," + ",".join(dict(zip(names, cells_of(ln)))[n] for n in order) + ",<=50K\n"
        for i, ln in enumerate(_lines(folder / "adult.test"))))
    assert _cli_json(served.address, "--csv", str(header))["probabilities"] == want
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(",".join(reversed(cells_of(ln))) + "\n" for ln in _lines(folder / "adult.test")))
    assert _cli_json(served.address, "--csv", str(bare), "--columns", ",".join(order))["probabilities"] == want


def test_predict_csv_names_a_malformed_raw_line(served: RunningDaemon, tmp_path: Path) -> None:
    data = tmp_path / "short.csv"
    data.write_text("39, State-gov, 77516\n")
    result = CliRunner().invoke(main, ["predict", "--csv", str(data), "--server", served.address])
    assert result.exit_code == 2
    assert f"{data} line 1: 3 fields, expected 14 (age, workclass" in result.stderr


# ------------------------------------------------------------------------------------------------ forgetting


def test_the_forget_that_empties_a_category_reports_it_and_verify_replays_it(adult: tuple[Path, Path, object],
                                                                            tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(adult[1], store)
    rare, common = f"adult.data:{RARE_LINE}", f"adult.data:{RARE_LINE + 1}"
    with running_daemon(store) as running, Client(running.address) as client:
        feature = client.model().input_schema.columns[-1]  # type: ignore[union-attr]
        index = feature.feature_offset + feature.categories.index(RARE_COUNTRY)
        emptied = client.forget([rare], strategy="sisa", timeout=120)
        kept = client.forget([common], strategy="sisa", timeout=120)
        schema_after = client.model().input_schema
        report = audit(store, server=running.address)  # the replay reproduces the downgrade; the live check
        assert report.ok, report.text()  # compares the served encoder with genesis's
    assert emptied.result is not None and emptied.result.guarantee == "approximate"
    assert emptied.result.encoder_residue == (EncoderResidue("native-country", RARE_COUNTRY, index),)
    assert [s.guarantee for s in emptied.samples] == ["approximate"]
    assert kept.result is not None and (kept.result.guarantee, kept.result.encoder_residue) == ("exact", ())
    assert schema_after is not None and RARE_COUNTRY in schema_after.columns[-1].categories  # never refitted
    with Ledger(store / "ledger.sqlite") as ledger:
        applied = [e.payload for e in ledger.entries() if e.type == "forget.applied"]
    assert applied[0]["encoder_residue"] == [{"column": "native-country", "category": RARE_COUNTRY, "feature": index}]
    assert "encoder_residue" not in applied[1]


def test_verify_names_a_tampered_encoder(adult: tuple[Path, Path, object], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(adult[1], store)
    with running_daemon(store):
        pass  # genesis: the ledger commits the encoder's digest, and the vault links the file
    assert audit(store).ok
    live = store / "encoder.json"
    doc = json.loads(live.read_bytes())
    doc["columns"][0]["mean"] += 1.0  # still a well-formed encoder: only the digest tells
    fake = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    (store / "encoder.new").write_bytes(fake)
    os.replace(store / "encoder.new", live)  # a new file: the vault's link keeps the committed bytes
    report = audit(store)
    genesis = report.check("genesis")
    assert not report.ok and genesis.status == "failed"
    [finding] = [f for f in genesis.problems if "feature encoder" in f.what]
    assert finding.what.startswith("the live store's feature encoder (encoder.json) is not the one genesis committed")
    assert finding.actual == hashlib.sha256(fake).hexdigest()
    (store / "audit" / "genesis" / "encoder.json").write_bytes(fake)  # the vault's copy too
    whats = [f.what for f in audit(store).check("genesis").problems]
    assert any(w.startswith("the vault audit/genesis's feature encoder (encoder.json) is not the one") for w in whats)


# ------------------------------------------------------------------------------------------------ real Adult


@pytest.mark.skipif(not (ADULT_DIR / "adult.data").is_file(), reason=f"UCI Adult not found at {ADULT_DIR}")
def test_real_adult_rows_from_the_files_are_answered_as_their_encoded_features(tmp_path: Path) -> None:
    ds = _train(ADULT_DIR, tmp_path / "adult", n_train=600)
    data, test = (ADULT_DIR / "adult.data").read_text(), (ADULT_DIR / "adult.test").read_text()
    head = "\n".join(data.splitlines()[:40])  # lines 1..40 are training rows 0..39
    with running_daemon(tmp_path / "adult", http_listen="127.0.0.1:0") as running, Client(running.address) as client:
        schema = client.model().input_schema
        assert schema is not None and len(schema.columns) == 14
        got = client.predict_records(read_csv(head, "adult.data", schema))
        want = _encoded(running, ds.X_train[:40])  # type: ignore[attr-defined]
        assert np.asarray(got.probabilities, dtype=np.float32).tobytes() == want
        # The first 30 rows, after the `|1x3 Cross validator` line the original file opens with (when it does).
        first = test.splitlines()[: 31 if test.startswith("|") else 30]
        rows = read_csv("\n".join(first), "adult.test", schema)
        x_test = ds.X_test[:30]  # type: ignore[attr-defined]
        assert np.asarray(client.predict_records(rows).probabilities, np.float32).tobytes() == _encoded(running, x_test)
        http_client = th.InferenceServerClient(f"127.0.0.1:{running.daemon.http_port}")
        try:
            lines = data.splitlines()[:40]
            answer = http_client.infer(MODEL, _column_inputs(th, lines, binary=False))
            assert answer.as_numpy("probabilities").tobytes() == want
        finally:
            http_client.close()


def test_a_daemon_refuses_to_start_on_a_tampered_encoder(adult: tuple[Path, Path, object], tmp_path: Path) -> None:
    from forgetd.server.engine.engine import Engine
    from forgetd.server.errors import StoreError

    store = tmp_path / "store"
    shutil.copytree(adult[1], store)
    live = store / "encoder.json"
    doc = json.loads(live.read_bytes())
    doc["columns"][0]["mean"] += 1.0  # still a well-formed encoder: only the digest genesis committed tells
    live.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    with pytest.raises(StoreError, match=r"encoder\.json: sha256 [0-9a-f]{64} is not the [0-9a-f]{64} genesis "
                                         r"committed"):
        Engine.open(store)
