"""RFC 9162 Merkle trees: known answers from JSON vectors, published CT values, hashes computed by hand,
and property tests against the naive reference in tests/merkle_reference.py."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # tests/ may or may not be a package; the reference lives here
import merkle_reference as ref  # noqa: E402

from forgetd.ledger import ConsistencyProof, Head, InclusionProof, ProofError, RootMismatch, verify_consistency, verify_inclusion
from forgetd.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    hash_children,
    hash_leaf,
    root_from_inclusion_proof,
    root_of,
    verify_consistency_proof,
    verify_inclusion_proof,
)

DATA = Path(__file__).parent / "data"
ERRORS = {"ProofError": ProofError, "RootMismatch": RootMismatch}


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


INCLUSION = _load("rfc9162_inclusion.json")
CONSISTENCY = _load("rfc9162_consistency.json")
PUBLISHED = _load("rfc6962_published.json")
H = bytes.fromhex


def _hashes(items: list[str]) -> list[bytes]:
    return [H(h) for h in items]


@pytest.mark.parametrize("vector", INCLUSION["vectors"], ids=lambda v: v["desc"])
def test_inclusion_vectors(vector: dict) -> None:
    args = (vector["index"], vector["size"], H(vector["leaf_hash"]), _hashes(vector["proof"]), H(vector["root"]))
    if vector["want_error"] is None:
        verify_inclusion_proof(*args)
        assert root_from_inclusion_proof(*args[:4]) == H(vector["root"])
    else:
        with pytest.raises(ERRORS[vector["want_error"]]) as info:
            verify_inclusion_proof(*args)
        if vector["want_error"] == "ProofError":
            assert not isinstance(info.value, RootMismatch), "a precondition failure, not a root mismatch"


@pytest.mark.parametrize("vector", CONSISTENCY["vectors"], ids=lambda v: v["desc"])
def test_consistency_vectors(vector: dict) -> None:
    args = (vector["size1"], vector["size2"], H(vector["root1"]), H(vector["root2"]), _hashes(vector["proof"]))
    if vector["want_error"] is None:
        verify_consistency_proof(*args)
    else:
        with pytest.raises(ERRORS[vector["want_error"]]) as info:
            verify_consistency_proof(*args)
        if vector["want_error"] == "ProofError":
            assert not isinstance(info.value, RootMismatch)


def test_valid_vectors_are_what_the_tree_makes() -> None:
    tree = MerkleTree(ref.leaf_hash(d) for d in ref.LEAVES)
    for v in INCLUSION["vectors"]:
        if v["want_error"] is None:
            assert _hashes(v["proof"]) == tree.inclusion_proof(v["index"], v["size"]), v["desc"]
            assert tree.root(v["size"]) == H(v["root"])
    for v in CONSISTENCY["vectors"]:
        if v["want_error"] is None:
            assert _hashes(v["proof"]) == tree.consistency_proof(v["size1"], v["size2"]), v["desc"]


def test_vector_files_are_reproducible() -> None:
    """The committed vectors are exactly what the reference produces (regenerate with the script)."""
    assert ref.inclusion_vectors() == INCLUSION
    assert ref.consistency_vectors() == CONSISTENCY


def test_every_vector_has_desc_want_error_and_provenance() -> None:
    for doc in (INCLUSION, CONSISTENCY):
        assert doc["produced_by"]
        for v in doc["vectors"]:
            assert v["desc"] and v["produced"] and "want_error" in v
    kinds = " ".join(v["desc"] for v in INCLUSION["vectors"] + CONSISTENCY["vectors"])
    for kind in ("wrong length", "wrong index", "size mismatch", "empty tree", "sizes swapped"):
        assert kind in kinds


def test_published_roots_and_proofs() -> None:
    leaves = [hash_leaf(H(d)) for d in PUBLISHED["leaves"]]
    tree = MerkleTree(leaves)
    for size, root in enumerate(PUBLISHED["roots"]):
        assert tree.root(size).hex() == root
        assert root_of(leaves[:size]).hex() == root
        assert ref.mth([H(d) for d in PUBLISHED["leaves"][:size]]).hex() == root
    for v in PUBLISHED["inclusion"]:
        assert tree.inclusion_proof(v["index"], v["size"]) == _hashes(v["proof"]), v["desc"]
        verify_inclusion_proof(v["index"], v["size"], leaves[v["index"]], _hashes(v["proof"]), H(PUBLISHED["roots"][v["size"]]))
    for v in PUBLISHED["consistency"]:
        assert tree.consistency_proof(v["size1"], v["size2"]) == _hashes(v["proof"]), v["desc"]
        verify_consistency_proof(v["size1"], v["size2"], H(PUBLISHED["roots"][v["size1"]]),
                                 H(PUBLISHED["roots"][v["size2"]]), _hashes(v["proof"]))


def test_hand_computed_hashes() -> None:
    """A few values spelled out with hashlib alone, independent of both the reference and the library."""
    sha = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    d = [b"a", b"b", b"c"]
    l0, l1, l2 = (sha(b"\x00" + x) for x in d)
    n01 = sha(b"\x01" + l0 + l1)
    root3 = sha(b"\x01" + n01 + l2)
    assert EMPTY_ROOT == sha(b"")
    assert hash_leaf(b"a") == l0 and hash_children(l0, l1) == n01
    tree = MerkleTree([l0, l1, l2])
    assert tree.root() == root3 and tree.root(2) == n01 and tree.root(1) == l0
    assert tree.inclusion_proof(2) == [n01]  # the right leaf of an unbalanced tree: its sibling is the left subtree
    assert tree.inclusion_proof(0) == [l1, l2]
    assert tree.consistency_proof(2, 3) == [l2]  # size 2 is a power of two: root1 stands in, only l2 is needed
    assert tree.consistency_proof(1, 3) == [l1, l2]
    verify_inclusion_proof(2, 3, l2, [n01], root3)
    verify_consistency_proof(2, 3, n01, root3, [l2])


def test_appending_and_extending_build_the_same_tree() -> None:
    leaves = [hash_leaf(bytes([i])) for i in range(70)]
    for split in (0, 1, 5, 8, 33, 64, 70):
        one_by_one = MerkleTree()
        for leaf in leaves:
            one_by_one.append(leaf)
        mixed = MerkleTree(leaves[:split])
        for leaf in leaves[split:split + 3]:
            mixed.append(leaf)
        mixed.extend(leaves[split + 3:])
        assert mixed.levels == one_by_one.levels
        assert all(mixed.root(n) == root_of(leaves[:n]) for n in range(71))


def test_root_mismatch_carries_expected_and_computed() -> None:
    tree = MerkleTree(hash_leaf(bytes([i])) for i in range(5))
    proof = tree.inclusion_proof(3)
    wrong = b"\x07" * 32
    with pytest.raises(RootMismatch) as info:
        verify_inclusion_proof(3, 5, tree.leaf(3), proof, wrong)
    assert info.value.expected == wrong and info.value.computed == tree.root()
    assert str(info.value) == f"root mismatch: expected {wrong.hex()}, computed {tree.root().hex()}"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: root_from_inclusion_proof(5, 5, b"\0" * 32, []), "index 5 out of range for tree size 5"),
        (lambda: root_from_inclusion_proof(0, 5, b"\0" * 32, []), "wrong proof size 0, want 3 (index 0, size 5)"),
        (lambda: root_from_inclusion_proof(0, 2, b"\0" * 31, [b"\0" * 32]), "leaf hash is 31 bytes, want 32 bytes"),
        (lambda: verify_consistency_proof(5, 3, EMPTY_ROOT, EMPTY_ROOT, []), "new size 3 < old size 5: a ledger only grows"),
        (lambda: verify_consistency_proof(3, 5, EMPTY_ROOT, EMPTY_ROOT, []), "empty proof for sizes 3 -> 5, want at least 1 hash"),
    ],
)
def test_preconditions_name_both_numbers(call, message: str) -> None:
    with pytest.raises(ProofError, match="^" + re.escape(message) + "$"):
        call()


# --- properties against the naive reference -------------------------------------------------------------

leaf_data = st.lists(st.binary(max_size=8), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(data=leaf_data, pick=st.data())
def test_tree_matches_reference(data: list[bytes], pick: st.DataObject) -> None:
    tree = MerkleTree(ref.leaf_hash(d) for d in data)
    n = len(data)
    size = pick.draw(st.integers(1, n), label="size")
    index = pick.draw(st.integers(0, size - 1), label="index")
    old = pick.draw(st.integers(1, size), label="old")
    root = ref.mth(data[:size])
    assert tree.root(size) == root == root_of([ref.leaf_hash(d) for d in data[:size]])
    assert tree.inclusion_proof(index, size) == ref.path(index, data[:size])
    assert tree.consistency_proof(old, size) == ref.proof(old, data[:size])
    verify_inclusion_proof(index, size, ref.leaf_hash(data[index]), ref.path(index, data[:size]), root)
    verify_consistency_proof(old, size, ref.mth(data[:old]), root, ref.proof(old, data[:size]))


@settings(max_examples=40, deadline=None)
@given(data=leaf_data, pick=st.data())
def test_any_tampered_proof_is_rejected(data: list[bytes], pick: st.DataObject) -> None:
    n = len(data)
    index = pick.draw(st.integers(0, n - 1), label="index")
    proof = ref.path(index, data)
    root = ref.mth(data)
    leaf = ref.leaf_hash(data[index])
    if proof:
        i = pick.draw(st.integers(0, len(proof) - 1), label="hash")
        bit = pick.draw(st.integers(0, 255), label="bit")
        bad = list(proof)
        bad[i] = bad[i][: bit // 8] + bytes([bad[i][bit // 8] ^ (1 << (bit % 8))]) + bad[i][bit // 8 + 1:]
        with pytest.raises(RootMismatch):
            verify_inclusion_proof(index, n, leaf, bad, root)
    with pytest.raises(ProofError):
        verify_inclusion_proof(index, n, leaf, proof + [root], root)
    if n > 1:
        old = pick.draw(st.integers(1, n - 1), label="old")
        cproof = ref.proof(old, data)
        with pytest.raises(ProofError):
            verify_consistency_proof(old, n, ref.mth(data[: old - 1]) if old > 1 else b"\1" * 32, root, cproof)


def test_head_level_verifiers() -> None:
    leaves = [hash_leaf(bytes([i])) for i in range(6)]
    tree = MerkleTree(leaves)
    chain = b"\x09" * 32
    new, old = Head(6, chain, tree.root()), Head(4, b"\x08" * 32, tree.root(4))
    proof = InclusionProof(seq=3, size=6, leaf_hash=leaves[2], hashes=tuple(tree.inclusion_proof(2)))
    proof.verify(new)
    verify_inclusion(leaves[2], 3, list(proof.hashes), new)
    assert InclusionProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof
    with pytest.raises(ProofError, match="^the proof is for size 6, but the head has size 4$"):
        proof.verify(old)
    with pytest.raises(ProofError, match="^seq 0 out of range for a head of size 6"):
        verify_inclusion(leaves[2], 0, [], new)
    with pytest.raises(ProofError, match="^the proof is for seq 3, not seq 4$"):
        verify_inclusion(leaves[2], 4, proof, new)
    consistency = ConsistencyProof(4, 6, tuple(tree.consistency_proof(4, 6)))
    consistency.verify(old, new)
    assert ConsistencyProof.from_dict(consistency.to_dict()) == consistency
    verify_consistency(Head.empty(), new, [])
    with pytest.raises(ProofError, match="^the proof is for sizes 4 -> 6, but the heads have sizes 6 -> 4$"):
        consistency.verify(new, old)
    with pytest.raises(ProofError, match="differ in chain hash"):
        verify_consistency(Head(6, b"\x01" * 32, tree.root()), new, [])
