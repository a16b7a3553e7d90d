"""Proofs are built from a snapshot of the Merkle tree, outside the appends' lock: a caller asking for many
inclusion proofs never holds up a Forget's acknowledgement, and its proofs are against the head it got."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forgetd.ledger import Head, InclusionProof, Ledger
from forgetd.ledger.merkle import MerkleTree
from forgetd.server.runtime.ledger_writer import LedgerWriter


def test_an_append_goes_through_while_proofs_are_being_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite", tmp_path / "head.key")
    for i in range(8):
        writer.append("test.note", {"i": i}, event_id=f"note-{i}")
    building, release = threading.Event(), threading.Event()
    real = MerkleTree.inclusion_proof

    def held(self: MerkleTree, index: int, size: int | None = None) -> list[bytes]:
        building.set()
        release.wait(60)  # a proof that takes as long as the test needs
        return real(self, index, size)

    monkeypatch.setattr(MerkleTree, "inclusion_proof", held)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(writer.head_with_proofs(None, [1, 5, 8])))
    reader.start()
    try:
        assert building.wait(60)
        appender = threading.Thread(target=writer.append, args=("test.note", {"i": 99}), kwargs={"event_id": "late"})
        appender.start()
        appender.join(60)
        appended_meanwhile = not appender.is_alive()
    finally:
        release.set()
        reader.join(60)
    assert appended_meanwhile, "the append waited for the proofs"
    proofs = answers[0]
    head = Head(proofs.head.size, proofs.head.chain_hash, proofs.head.merkle_root)
    assert head.size == 8 and writer.size() == 9  # the proofs are against the head taken before the append
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.head(8) == head
        for proof in proofs.inclusions:
            InclusionProof(proof.seq, proof.tree_size, ledger.entry(proof.seq).leaf_hash, proof.hashes).verify(head)
    writer.close()
