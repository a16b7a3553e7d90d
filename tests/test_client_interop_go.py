"""The Go client of tests/interop/go/client against a real daemon, and Go's verdicts on forgetd's tlog-proofs.

The client is built from stubs that protoc, protoc-gen-go and protoc-gen-go-grpc generate here from
protos/forgetd/v1 into a temporary GOPATH (no generated code is committed), against Debian's packaged Go
sources in GOPATH mode, so the build needs no network. It checks every hash and proof with golang.org/x/mod's
sumdb/note and sumdb/tlog, which share nothing with forgetd's Python. `make test` installs the toolchain
(APT_INSTALL below); without it these tests skip.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from forgetd.client import Client, Receipt
from forgetd.client.tlog import receipt_tlog_proof
from forgetd.ledger import (
    Checkpoint,
    CosignatureSigner,
    Ledger,
    LedgerError,
    SigningKey,
    TlogProof,
    checkpoint_for_head,
    checkpoint_signer,
    checkpoint_verifier,
    default_origin,
    export_tlog_proof,
    ledger_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    verify_tlog_proof,
)
from forgetd.ledger.merkle import hash_children
from forgetd.server.store.layout import StorePaths
from forgetd.v1 import inference_service_pb2, unlearning_service_pb2

from helpers import REPO, RunningDaemon, running_daemon

APT_INSTALL = ("apt-get install -y --no-install-recommends golang-go golang-golang-x-mod-dev protobuf-compiler "
               "protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev")
GOCODE = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put Go sources
GO_SOURCES = ("golang.org/x/mod/sumdb/tlog", "google.golang.org/grpc", "google.golang.org/protobuf",
              "github.com/golang/protobuf/ptypes")  # ptypes: golang/protobuf 1.4+, built on APIv2 as grpc needs
STUBS_PACKAGE = "example.com/forgetd/gen/go"  # the import path README gives the Go stubs
PROTOS = ("common", "inference_service", "unlearning_service")
CLIENT = "./tests/interop/go/client"
# The daemon fills LedgerHead.checkpoint, GetModelResponse.verifier_key and checkpoint_origin: every head must
# carry a checkpoint that verifies (the Go client's -require-checkpoint).
REQUIRE_CHECKPOINT = True


def _missing_toolchain() -> str | None:
    tools = [t for t in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc") if shutil.which(t) is None]
    sources = [s for s in GO_SOURCES if not (GOCODE / "src" / s).is_dir()]
    if not tools and not sources:
        return None
    missing = ", ".join(tools + sources)
    return f"the Go toolchain is incomplete (missing {missing}): as root, apt-get update && {APT_INSTALL}"


pytestmark = pytest.mark.skipif(_missing_toolchain() is not None, reason=_missing_toolchain() or "")


def _go_env(gopath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGETD_TOKEN"}
    env.update(GO111MODULE="off", GOPATH=f"{gopath}{os.pathsep}{GOCODE}", GOFLAGS="", GOPROXY="off", CGO_ENABLED="0")
    if not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(gopath / "cache")  # go refuses to build without a cache directory
    return env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert result.returncode == 0, f"{' '.join(cmd[:3])}... failed:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client binary, built from stubs generated into a temporary GOPATH."""
    work = tmp_path_factory.mktemp("go")
    out = work / "gopath" / "src" / STUBS_PACKAGE
    out.mkdir(parents=True)
    # M options give the .proto files a Go import path, so the protos stay language-neutral.
    m = "".join(f",Mforgetd/v1/{p}.proto={STUBS_PACKAGE}/forgetd/v1" for p in PROTOS)
    env = _go_env(work / "gopath")
    _run(["protoc", "-I", str(REPO / "protos"), f"--go_out={out}", f"--go_opt=paths=source_relative{m}",
          f"--go-grpc_out={out}", f"--go-grpc_opt=paths=source_relative{m}",
          *(str(REPO / "protos" / "forgetd" / "v1" / f"{p}.proto") for p in PROTOS)], env)
    _run(["go", "build", "-o", str(work / "client"), CLIENT], env)
    return work / "client"


def _go(client: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGETD_TOKEN"}
    return subprocess.run([str(client), *args], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


# ------------------------------------------------------------------------------------------------ live daemon


@dataclass(frozen=True)
class LogKey:
    """What a tlog-proof for the daemon's ledger is signed and checked with."""

    key: SigningKey
    origin: str
    vkey: str
    served: bool  # the daemon sends this verifier key itself (GetModelResponse.verifier_key)


def _log_key(daemon: RunningDaemon) -> LogKey:
    """The daemon's checkpoint key: the head key in its store, under the origin it announces (or the default)."""
    inference, _ = daemon.stubs()
    model = inference.GetModel(inference_service_pb2.GetModelRequest(), timeout=10)
    key = SigningKey.from_pem(StorePaths(daemon.store).head_key.read_bytes())
    origin = model.checkpoint_origin or default_origin(key.public_key)
    vkey = checkpoint_verifier(key.public_key, origin).vkey
    assert model.verifier_key in ("", vkey), "the daemon's verifier key is not its head key under its origin"
    return LogKey(key, origin, vkey, bool(model.verifier_key))


def _genesis_proof(daemon: RunningDaemon, log: LogKey, path: Path) -> Path:
    """A tlog-proof of the genesis entry under the daemon's checkpoint (or one signed here with its key)."""
    _, unlearning = daemon.stubs()
    head = unlearning.GetLedgerHead(unlearning_service_pb2.GetLedgerHeadRequest(), timeout=10).head
    with Ledger(StorePaths(daemon.store).ledger, readonly=True) as ledger:
        signed = head.checkpoint.encode() if head.checkpoint else ledger_checkpoint(ledger, log.key, log.origin)
        path.write_bytes(export_tlog_proof(ledger, 1, signed).to_bytes())
    return path


def test_the_go_client_predicts_forgets_and_verifies_every_proof(go_client: Path, daemon: RunningDaemon,
                                                                 tmp_path: Path) -> None:
    log = _log_key(daemon)
    proof = _genesis_proof(daemon, log, tmp_path / "genesis.tlog-proof")
    args = ["-addr", daemon.address, "-forget", "synthetic:42", "-tlog-proof", str(proof), "-verifier-key", log.vkey]
    result = _go(go_client, *args, *(["-require-checkpoint"] if REQUIRE_CHECKPOINT or log.served else []))
    assert result.returncode == 0, f"the Go client failed:\n{result.stdout}{result.stderr}"
    report = json.loads(result.stdout)
    assert (report["model_version_before"], report["model_version_after"]) == (0, 1)
    assert report["forgot"] == "synthetic:42" and report["predicted_rows"] == 6
    assert report["ledger_entries"] == 3 and report["consistency"] == [1, 3]
    assert report["leaf_hashes"].startswith("recomputed from the envelopes")
    assert report["merkle_root"].startswith("recomputed") and report["head_signature"].startswith("verified")
    assert [(p["seq"], p["against"]) for p in report["inclusion"]] == [
        (2, "receipt head"), (3, "receipt head"), (2, "head"), (3, "head")]
    assert report["checkpoint"].startswith("verified" if log.served else "absent")
    assert {k: report["tlog_proof"][k] for k in ("seq", "tree_size", "origin", "root_is_the_ledgers")} == {
        "seq": 1, "tree_size": 1, "origin": log.origin, "root_is_the_ledgers": True}
    # What Go did is what Python sees: one forget applied, both of its entries in the ledger.
    with Client(daemon.address) as client:
        assert client.model().version == 1
        assert [e.type for e in client.ledger()] == ["genesis", "forget.requested", "forget.applied"]


def _forked_proof(log: LogKey, leaf: bytes, path: Path) -> Path:
    """A proof of `leaf` as leaf 0 of a two-leaf tree the log key signed but the ledger never had."""
    sibling = bytes(32)
    signed = sign_checkpoint(Checkpoint(log.origin, 2, hash_children(leaf, sibling)),
                             checkpoint_signer(log.key, log.origin))
    path.write_bytes(TlogProof(0, (sibling,), signed).to_bytes())
    return path


def test_the_go_client_fails_loudly_in_one_line(go_client: Path, daemon: RunningDaemon, tmp_path: Path) -> None:
    unknown = _go(go_client, "-addr", daemon.address, "-forget", "no-such-id")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("interop-go: FAIL: Forget: gRPC NOT_FOUND: unknown sample id(s)")
    assert unknown.stderr.count("\n") == 1

    log = _log_key(daemon)
    if not log.served:  # once the daemon sends checkpoints, the test above runs with -require-checkpoint
        bare = _go(go_client, "-addr", daemon.address, "-forget", "synthetic:7", "-require-checkpoint")
        assert bare.returncode == 1 and bare.stderr == ("interop-go: FAIL: -require-checkpoint: GetModel sent "
                                                        'verifier_key "" and checkpoint_origin "", want both\n')

    # Signed by the log key and proving the real genesis leaf, but of a fork: the live ledger refutes it.
    with Ledger(StorePaths(daemon.store).ledger, readonly=True) as ledger:
        genesis = ledger.entry(1).leaf_hash
    forked = _forked_proof(log, genesis, tmp_path / "forked.tlog-proof")
    result = _go(go_client, "-addr", daemon.address, "-forget", "synthetic:43", "-tlog-proof", str(forked),
                 "-verifier-key", log.vkey)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"interop-go: FAIL: -tlog-proof {forked}: its checkpoint root ")
    assert "is not the ledger's root at size 2" in result.stderr


# ------------------------------------------------------------------------------------------------ offline proofs

ENTRIES = 300
ORIGIN = "example.com/forgetd-interop"


@dataclass(frozen=True)
class Log:
    """A ledger, its log key and origin, and a signed checkpoint at each of several sizes."""

    ledger: Ledger
    key: SigningKey
    vkey: str
    leaves: tuple[bytes, ...]
    checkpoints: dict[int, bytes]
    origin: str = ORIGIN

    def checkpoint(self, size: int, *, key: SigningKey | None = None, origin: str | None = None,
                   root: bytes | None = None) -> bytes:
        origin = origin or self.origin
        cp = checkpoint_for_head(self.ledger.head(size), origin)
        cp = cp if root is None else replace(cp, root_hash=root)
        return sign_checkpoint(cp, checkpoint_signer(key or self.key, origin))


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    with Ledger(tmp_path_factory.mktemp("tlog") / "ledger.sqlite") as ledger:
        ledger.append_many([("forget.requested", {"request": f"r{i}", "n": i}, f"id-{i}") for i in range(ENTRIES)])
        key = SigningKey.generate()
        witness = CosignatureSigner("witness.example/interop", SigningKey.generate(), clock=lambda: 1700000000)
        sizes = {1, 2, 3, 4, 5, 7, 8, 9, 127, 128, 129, 255, 256, 257, ENTRIES} | set(random.Random(7).sample(
            range(1, ENTRIES + 1), 25))
        signer = checkpoint_signer(key, ORIGIN)
        # Every third checkpoint also carries a witness's cosignature: an unknown key, which verifiers ignore.
        checkpoints = {n: sign_checkpoint(checkpoint_for_head(ledger.head(n), ORIGIN),
                                          *((signer, witness) if n % 3 == 0 else (signer,))) for n in sorted(sizes)}
        yield Log(ledger, key, checkpoint_verifier(key.public_key, ORIGIN).vkey,
                  tuple(e.leaf_hash for e in ledger.entries()), checkpoints)


DAEMON_FORGETS = 40


@dataclass(frozen=True)
class DaemonLog:
    """What a real daemon answered: its receipts (acknowledged and then applied) and its verifier key."""

    log: Log
    receipts: tuple[Receipt, ...]


@pytest.fixture(scope="module")
def served_log(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonLog]:
    """A daemon's ledger after DAEMON_FORGETS forgets sent without waiting (so its heads have many sizes), with
    every checkpoint its receipts carried: the daemon's own signatures, none made here."""
    store = tmp_path_factory.mktemp("go-daemon") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store) as daemon, Client(daemon.address) as client:
        acks = [client.forget([f"synthetic:{100 + i}"], wait=False) for i in range(DAEMON_FORGETS)]
        client.forget(["synthetic:99"], wait=True)  # one worker, in order: every earlier request is applied now
        applied = [client.forget_status(r.request_id) for r in acks]
        vkey, origin = client.model().verifier_key, client.model().checkpoint_origin
    receipts = tuple(acks + applied)
    assert all(r.applied for r in applied) and all(r.head is not None and r.head.checkpoint for r in receipts)
    checkpoints = {r.head.size: r.head.checkpoint.encode() for r in receipts if r.head is not None}
    key = SigningKey.from_pem(StorePaths(store).head_key.read_bytes())
    with Ledger(StorePaths(store).ledger, readonly=True) as ledger:
        leaves = tuple(e.leaf_hash for e in ledger.entries())
        yield DaemonLog(Log(ledger, key, vkey, leaves, checkpoints, origin), receipts)


@pytest.fixture(scope="module")
def daemon_log(served_log: DaemonLog) -> Log:
    return served_log.log


def test_go_verifies_1000_proofs_of_the_daemons_receipts(go_client: Path, served_log: DaemonLog,
                                                         tmp_path: Path) -> None:
    log = served_log.log
    # Every receipt's own entries, exported as `forgetd receipt export` does, then random entries of the daemon's
    # ledger under the daemon's checkpoints, up to 1000.
    proofs = [receipt_tlog_proof(r, entry) for r in served_log.receipts
              for entry in (("requested", "applied") if r.applied else ("requested",))]
    rng = random.Random(20240502)
    sizes = sorted(log.checkpoints)
    while len(proofs) < 1000:
        size = rng.choice(sizes)
        seq = rng.randint(1, size)
        proofs.append(export_tlog_proof(log.ledger, seq, log.checkpoints[size], extra=log.leaves[seq - 1]))
    items = [_item(p, log.vkey, log.leaves[p.index]) for p in proofs]
    assert all(p.extra == log.leaves[p.index] for p in proofs)  # the leaf a receipt names is the ledger's
    verdicts = _go_verdicts(go_client, items, tmp_path / "daemon-proofs.json")
    refused = [(i, v["error"]) for i, v in enumerate(verdicts) if not v["accepted"]]
    assert refused == [], f"Go refused {len(refused)} of 1000 of the daemon's proofs, first: {refused[:3]}"
    assert all(_python_accepts(item) for item in items)
    assert len(sizes) > 10  # heads of many sizes, so many tree shapes


def _item(proof: TlogProof | bytes, vkey: str, leaf: bytes) -> dict[str, str]:
    text = proof.to_bytes() if isinstance(proof, TlogProof) else proof
    return {"tlog_proof": text.decode(), "verifier_key": vkey, "leaf_hash_hex": leaf.hex()}


def _go_verdicts(client: Path, items: list[dict[str, str]], path: Path) -> list[dict[str, object]]:
    path.write_text(json.dumps(items), encoding="utf-8")
    result = _go(client, "-verify-proofs", str(path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["items"] == len(items) == report["accepted"] + report["refused"] == len(report["results"])
    return report["results"]


def _python_accepts(item: dict[str, str]) -> bool:
    try:
        verifier = parse_verifier_key(item["verifier_key"])
        verify_tlog_proof(item["tlog_proof"].encode(), bytes.fromhex(item["leaf_hash_hex"]), verifier,
                          origin=verifier.name)
    except LedgerError:
        return False
    return True


def test_go_verifies_1000_random_inclusion_proofs(go_client: Path, log: Log, tmp_path: Path) -> None:
    rng = random.Random(20240501)
    sizes = sorted(log.checkpoints)
    items = []
    for i in range(1000):
        size = rng.choice(sizes)
        seq = rng.randint(1, size)
        extra = b"receipt %d" % i if i % 10 == 0 else None  # unauthenticated: it must not matter
        proof = export_tlog_proof(log.ledger, seq, log.checkpoints[size], extra=extra)
        items.append(_item(proof, log.vkey, log.leaves[seq - 1]))
    verdicts = _go_verdicts(go_client, items, tmp_path / "proofs.json")
    refused = [(i, v["error"]) for i, v in enumerate(verdicts) if not v["accepted"]]
    assert refused == [], f"Go refused {len(refused)} of 1000 valid proofs, first: {refused[:3]}"
    assert all(_python_accepts(item) for item in items)


# --- the tamper matrix: each way of lying about an entry, on several proofs; Go and Python must refuse all.

OTHER_KEY = SigningKey.generate()
OTHER_ROOT = hashlib.sha256(b"another tree").digest()
EVIL = "example.com/evil"


@dataclass(frozen=True)
class Base:
    """A valid proof of entry `seq` under the checkpoint of size `size`, the one each tamper edits."""

    seq: int
    size: int
    proof: TlogProof

    @property
    def index(self) -> int:
        return self.seq - 1

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return self.proof.hashes


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _edit_line(checkpoint: bytes, line: int, value: str | None) -> bytes:
    lines = checkpoint.decode().split("\n")
    lines[line : line + 1] = [] if value is None else [value]
    return "\n".join(lines).encode()


def _flip_signature(checkpoint: bytes, origin: str) -> bytes:
    """One bit of the log's signature flipped (not a witness's: verifiers ignore those of unknown keys)."""
    lines = checkpoint.decode().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(f"\u2014 {origin} "))
    sig = base64.b64decode(lines[at].rsplit(" ", 1)[1])
    return _edit_line(checkpoint, at, f"\u2014 {origin} {base64.b64encode(_flip(sig, 30)).decode()}")


def _edited(b: Base, line: int, value: str | None) -> TlogProof:
    """The checkpoint's text edited after signing."""
    return replace(b.proof, checkpoint=_edit_line(b.proof.checkpoint, line, value))


def _resigned(log: Log, b: Base, size: int | None = None, *, key: SigningKey | None = None, origin: str | None = None,
              root: bytes | None = None) -> TlogProof:
    """A checkpoint with a lie in it, signed (by the log key unless `key` is given)."""
    signed = log.checkpoint(b.size if size is None else size, key=key, origin=origin, root=root)
    return replace(b.proof, checkpoint=signed)


def _hashes(b: Base, hashes: tuple[bytes, ...]) -> TlogProof:
    return replace(b.proof, hashes=hashes)


# Each returns the tampered proof, or None where it does not apply to that base.
PROOF_TAMPERS: dict[str, Callable[[Log, Base], TlogProof | None]] = {
    "signature bit flipped": lambda g, b: replace(b.proof, checkpoint=_flip_signature(b.proof.checkpoint, g.origin)),
    "size edited": lambda g, b: _edited(b, 1, str(b.size + 1)),
    "size re-signed (smaller)": lambda g, b: _resigned(g, b, b.size - 1) if b.size > 1 else None,
    "size re-signed (larger)": lambda g, b: _resigned(g, b, b.size + 1) if b.size < len(g.leaves) else None,
    "root edited": lambda g, b: _edited(b, 2, base64.b64encode(OTHER_ROOT).decode()),
    "root re-signed": lambda g, b: _resigned(g, b, root=OTHER_ROOT),
    "origin edited": lambda g, b: _edited(b, 0, EVIL),
    "origin re-signed by the log key": lambda g, b: _resigned(g, b, origin=EVIL),
    "signed by another key": lambda g, b: _resigned(g, b, key=OTHER_KEY),
    "chain extension dropped": lambda g, b: _edited(b, 3, None),
    "proof hash bit flipped (first)": lambda g, b: _hashes(b, (_flip(b.hashes[0], 5), *b.hashes[1:])),
    "proof hash bit flipped (last)": lambda g, b: _hashes(b, (*b.hashes[:-1], _flip(b.hashes[-1], 31))),
    "proof hash dropped": lambda g, b: _hashes(b, b.hashes[:-1]),
    "proof hash added": lambda g, b: _hashes(b, (*b.hashes, bytes(32))),
    "proof hashes swapped": lambda g, b: _hashes(b, (b.hashes[1], b.hashes[0], *b.hashes[2:]))
    if len(b.hashes) > 1 else None,
    "index moved up": lambda g, b: replace(b.proof, index=b.index + 1) if b.seq < b.size else None,
    "index moved down": lambda g, b: replace(b.proof, index=b.index - 1) if b.index else None,
    "index past the tree": lambda g, b: replace(b.proof, index=b.size),
}
# The proof untouched, what it is checked with changed.
ITEM_TAMPERS: dict[str, Callable[[Log, Base], dict[str, str]]] = {
    "another entry's leaf": lambda g, b: _item(b.proof, g.vkey, g.leaves[b.index - 1 if b.index else 1]),
    "another log's key": lambda g, b: _item(b.proof, checkpoint_verifier(OTHER_KEY.public_key, g.origin).vkey,
                                            g.leaves[b.index]),
}


def _tampered(log: Log, bases: list[Base]) -> list[tuple[str, dict[str, str]]]:
    cases = []
    for desc, tamper in PROOF_TAMPERS.items():
        proofs = [(b, tamper(log, b)) for b in bases]
        cases += [(f"{desc} {b.seq}/{b.size}", _item(p, log.vkey, log.leaves[b.index])) for b, p in proofs if p]
    for desc, item_tamper in ITEM_TAMPERS.items():
        cases += [(f"{desc} {b.seq}/{b.size}", item_tamper(log, b)) for b in bases]
    return cases


def _bases(log: Log) -> list[Base]:
    """Proofs to tamper with: first, middle and last entries of the largest checkpoint, and a few smaller trees."""
    sizes = sorted(log.checkpoints)
    big, mid = sizes[-1], sizes[len(sizes) // 2]
    pairs = {(1, big), (big // 2, big), (big, big), (mid // 2 + 1, mid), (2, sizes[0] if sizes[0] >= 2 else 2),
             (5, 9) if 9 in log.checkpoints else (1, sizes[0])}
    return [Base(seq, size, export_tlog_proof(log.ledger, seq, log.checkpoints[size])) for seq, size in sorted(pairs)
            if size in log.checkpoints and 1 <= seq <= size]


@pytest.mark.parametrize("which", ["made here", "the daemon's"])
def test_go_and_python_refuse_every_tampered_proof(go_client: Path, log: Log, daemon_log: Log, which: str,
                                                   tmp_path: Path) -> None:
    log = log if which == "made here" else daemon_log
    bases = _bases(log)
    cases = [(f"untouched {b.seq}/{b.size}", _item(b.proof, log.vkey, log.leaves[b.index])) for b in bases]
    cases += _tampered(log, bases)
    verdicts = _go_verdicts(go_client, [item for _, item in cases], tmp_path / "tampered.json")
    table = [(desc, bool(v["accepted"]), _python_accepts(item)) for (desc, item), v in zip(cases, verdicts)]
    controls, tampered = table[: len(bases)], table[len(bases) :]
    assert all(go and py for _, go, py in controls), controls
    false_accepts = [row for row in tampered if row[1] or row[2]]
    assert false_accepts == [], f"accepted (desc, by Go, by Python): {false_accepts}"
    assert {desc.rsplit(" ", 1)[0] for desc, _, _ in tampered} == {*PROOF_TAMPERS, *ITEM_TAMPERS}  # all ran
