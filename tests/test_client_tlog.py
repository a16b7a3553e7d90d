"""Offline receipts: `forgetd receipt export --tlog-proof` writes a c2sp.org/tlog-proof@v1 from a receipt, and
`forgetd receipt verify` checks it offline (--verifier-key), against a store or against the daemon; every
tampered file is refused with one line, never a traceback."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers import running_daemon
from forgetd.client import Client, Receipt
from forgetd.client.cli.main import main
from forgetd.client.tlog import receipt_tlog_proof
from forgetd.client.types import receipt_to_json, save_receipt
from forgetd.ledger import (
    Checkpoint,
    SigningKey,
    TlogProof,
    checkpoint_signer,
    checkpoint_verifier,
    load_or_create_signing_key,
    parse_tlog_proof,
    sign_checkpoint,
)
from forgetd.ledger.merkle import hash_children
from forgetd.server.store.layout import StorePaths


@dataclass(frozen=True)
class Served:
    address: str
    store: Path
    vkey: str
    origin: str
    key: SigningKey
    applied: Receipt
    pending: Receipt  # as Forget answered with wait=false


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("tlog") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store) as daemon, Client(daemon.address) as client:
        applied = client.forget(["synthetic:20"], wait=True)
        pending = client.forget(["synthetic:21"], wait=False)
        model = client.model()
        key = load_or_create_signing_key(StorePaths(store).head_key)
        yield Served(daemon.address, store, model.verifier_key, model.checkpoint_origin, key, applied, pending)


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _export(served: Served, receipt: Receipt, tmp_path: Path, *extra: str) -> Path:
    save_receipt(receipt, tmp_path / "r.json")
    out = tmp_path / "r.tlog-proof"
    result = _cli("receipt", "export", str(tmp_path / "r.json"), "--tlog-proof", str(out), *extra)
    assert result.exit_code == 0, result.stderr
    return out


def test_export_writes_the_receipts_entry_as_a_tlog_proof(served: Served, tmp_path: Path) -> None:
    r = served.applied
    out = _export(served, r, tmp_path)
    proof = parse_tlog_proof(out.read_bytes())
    assert r.head is not None and r.applied_proof is not None
    assert (proof.index, proof.hashes, proof.extra) == (r.applied_seq - 1, r.applied_proof.hashes, r.applied_leaf_hash)
    assert proof.checkpoint == r.head.checkpoint.encode()
    assert out.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\nextra ")
    requested = parse_tlog_proof(_export(served, r, tmp_path, "--entry", "requested").read_bytes())
    assert (requested.index, requested.extra) == (r.requested_seq - 1, r.requested_leaf_hash)
    pending = parse_tlog_proof(_export(served, served.pending, tmp_path).read_bytes())  # pending: its request
    assert pending.index == served.pending.requested_seq - 1


@pytest.mark.parametrize("how", ["offline", "store", "server"])
def test_an_exported_proof_verifies_offline_against_the_store_and_against_the_daemon(
    served: Served, tmp_path: Path, how: str
) -> None:
    out = _export(served, served.applied, tmp_path)
    against = {"offline": ["--verifier-key", served.vkey], "store": ["--store", str(served.store)],
               "server": ["--server", served.address]}[how]
    result = _cli("receipt", "verify", str(out), *against)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok: entry seq {served.applied.applied_seq} (leaf hash "
                                    f"{served.applied.applied_leaf_hash.hex()}) is in the log {served.origin} at size ")
    as_json = json.loads(_cli("receipt", "verify", str(out), *against, "--json").stdout)
    assert (as_json["ok"], as_json["seq"], as_json["cosignatures"], as_json["problems"]) == (
        True, served.applied.applied_seq, 0, [])
    assert len(as_json["checks"]) == (2 if how == "offline" else 4)


def _edit_checkpoint_line(proof: TlogProof, line: int, value: str) -> TlogProof:
    lines = proof.checkpoint.decode().split("\n")
    lines[line] = value
    return replace(proof, checkpoint="\n".join(lines).encode())


def _flip_signature(proof: TlogProof) -> TlogProof:
    lines = proof.checkpoint.decode().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("\u2014 "))
    name, sig = lines[at].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[20] ^= 1
    lines[at] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    return replace(proof, checkpoint="\n".join(lines).encode())


def _resigned(s: Served, proof: TlogProof, key: SigningKey) -> TlogProof:
    cp = Checkpoint(s.origin, 2, hash_children(proof.extra or b"", bytes(32)))
    return TlogProof(0, (bytes(32),), sign_checkpoint(cp, checkpoint_signer(key, s.origin)), proof.extra)


OTHER = SigningKey.generate()
TAMPERS: dict[str, tuple[Callable[[Served, TlogProof], bytes], str]] = {
    "a proof hash flipped": (lambda s, p: replace(p, hashes=(bytes(32), *p.hashes[1:])).to_bytes(), "checkpoint root"),
    "the index moved": (lambda s, p: replace(p, index=p.index - 1).to_bytes(), "wrong proof size"),
    "another entry's leaf": (lambda s, p: replace(p, extra=s.applied.requested_leaf_hash).to_bytes(), "checkpoint root"),
    "the leaf dropped": (lambda s, p: replace(p, extra=None).to_bytes(), "names no leaf hash"),
    "the size edited": (lambda s, p: _edit_checkpoint_line(p, 1, "99").to_bytes(), "altered after signing"),
    "the signature flipped": (lambda s, p: _flip_signature(p).to_bytes(), "altered after signing"),
    "signed by another key": (lambda s, p: _resigned(s, p, OTHER).to_bytes(), "no signature from a known key"),
    "the file truncated": (lambda s, p: p.to_bytes()[:40], "not a tlog-proof: a tlog-proof needs an empty line"),
    "not a proof at all": (lambda s, p: b"hello\n", "neither a tlog-proof nor a JSON receipt"),
}


@pytest.mark.parametrize("desc", list(TAMPERS))
def test_a_tampered_proof_is_refused_in_one_line(served: Served, tmp_path: Path, desc: str) -> None:
    good = parse_tlog_proof(_export(served, served.applied, tmp_path).read_bytes())
    tamper, says = TAMPERS[desc]
    path = tmp_path / "bad.tlog-proof"
    path.write_bytes(tamper(served, good))
    for against in (["--verifier-key", served.vkey], ["--store", str(served.store)], ["--server", served.address]):
        result = _cli("receipt", "verify", str(path), *against)
        assert result.exit_code == 1 and result.stdout == "", (desc, against, result.stdout)
        assert result.stderr.startswith(f"Error: {path} does not hold: ") or "neither" in result.stderr, result.stderr
        why = result.stderr.split("does not hold: ", 1)[-1]  # (the path may hold any word)
        assert result.stderr.count("\n") == 1 and says in why, (desc, against, result.stderr)


def test_a_forked_checkpoint_passes_offline_but_not_against_the_ledger(served: Served, tmp_path: Path) -> None:
    """Signed by the real key, proving the real leaf, in a tree the ledger never had: only the ledger can tell."""
    good = parse_tlog_proof(_export(served, served.applied, tmp_path).read_bytes())
    forked = _resigned(served, replace(good, extra=served.applied.requested_leaf_hash), served.key)
    path = tmp_path / "forked.tlog-proof"
    path.write_bytes(forked.to_bytes())
    assert _cli("receipt", "verify", str(path), "--verifier-key", served.vkey).exit_code == 0
    store = _cli("receipt", "verify", str(path), "--store", str(served.store))
    assert store.exit_code == 1 and "another leaf hash" in store.stderr, store.stderr
    server = _cli("receipt", "verify", str(path), "--server", served.address)
    assert server.exit_code == 1 and "another leaf hash" in server.stderr, server.stderr


def test_another_logs_verifier_key_refuses_the_proof(served: Served, tmp_path: Path) -> None:
    out = _export(served, served.applied, tmp_path)
    other = checkpoint_verifier(OTHER.public_key, served.origin).vkey
    result = _cli("receipt", "verify", str(out), "--verifier-key", other)
    assert result.exit_code == 1 and "no signature from a known key" in result.stderr


def test_export_refuses_what_it_cannot_prove(served: Served, tmp_path: Path) -> None:
    save_receipt(served.pending, tmp_path / "pending.json")
    pending = _cli("receipt", "export", str(tmp_path / "pending.json"), "--tlog-proof", str(tmp_path / "p"),
                   "--entry", "applied")
    assert pending.exit_code == 1 and "the forget is pending: export --entry requested" in pending.stderr
    old = receipt_to_json(served.applied)
    del old["head"]["checkpoint"]  # a receipt saved before checkpoints
    (tmp_path / "old.json").write_text(json.dumps(old))
    result = _cli("receipt", "export", str(tmp_path / "old.json"), "--tlog-proof", str(tmp_path / "o"))
    assert result.exit_code == 1 and "its head has no checkpoint" in result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()
    with pytest.raises(Exception, match="no checkpoint"):
        receipt_tlog_proof(replace(served.applied, head=replace(served.applied.head, checkpoint="")))  # type: ignore[arg-type]


@pytest.mark.parametrize("flags", [[], ["--store", "."], ["--server", "x:1", "--verifier-key", "k+00000000+AQ=="]])
def test_verify_needs_exactly_one_source_of_trust(served: Served, tmp_path: Path, flags: list[str]) -> None:
    out = _export(served, served.applied, tmp_path)
    if flags == ["--store", "."]:
        flags = ["--store", str(served.store), "--verifier-key", served.vkey]
    result = _cli("receipt", "verify", str(out), *flags)
    assert result.exit_code == 2
