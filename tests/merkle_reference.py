"""A deliberately naive RFC 9162 Merkle tree, for tests only: the recursive definitions of section 2.1,
transcribed as literally as Python allows, over raw leaf *data* (not hashes), with no caching and no
cleverness. The ledger's MerkleTree and its verifiers are checked against this, and the JSON vectors in
tests/data were produced by it (run `python tests/merkle_reference.py` to regenerate them).

    MTH({})    = SHA-256()
    MTH({d0})  = SHA-256(0x00 || d0)
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])),  k the largest power of two < n

    PATH(m, D[1]) = {}
    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])       if m < k
                  = PATH(m - k, D[k:n]) : MTH(D[0:k])   if m >= k

    PROOF(m, D[n]) = SUBPROOF(m, D[n], true)
    SUBPROOF(m, D[m], true)  = {}
    SUBPROOF(m, D[m], false) = {MTH(D[m])}
    SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          if m <= k
                         = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  if m > k
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + data[0])
    k = largest_power_of_two_below(n)
    return sha256(b"\x01" + mth(data[:k]) + mth(data[k:]))


def path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    assert 0 <= m < n, "PATH is defined for 0 <= m < n"
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return path(m, data[:k]) + [mth(data[k:])]
    return path(m - k, data[k:]) + [mth(data[:k])]


def proof(m: int, data: list[bytes]) -> list[bytes]:
    assert 0 < m <= len(data), "PROOF is defined for 0 < m <= n"
    return subproof(m, data, True)


def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, data[:k], whole) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]


def leaf_hash(d: bytes) -> bytes:
    return sha256(b"\x00" + d)


# --- the vectors in tests/data ---------------------------------------------------------------------------

# The leaf inputs of the Certificate Transparency reference tests (RFC 6962 test data), so that roots and
# proofs here can be compared with values published by other implementations.
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
PRODUCED_BY = "tests/merkle_reference.py (naive recursive RFC 9162 section 2.1), run as a script"
DATA_DIR = Path(__file__).parent / "data"


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 0x01]) + h[1:]


def inclusion_vectors() -> dict:
    vectors = []

    def add(desc: str, index: int, size: int, leaf: bytes, root: bytes, hashes: list[bytes], want_error: str | None,
            how: str) -> None:
        vectors.append({"desc": desc, "index": index, "size": size, "leaf_hash": leaf.hex(), "root": root.hex(),
                        "proof": _hex(hashes), "want_error": want_error, "produced": how})

    for size in range(1, len(LEAVES) + 1):
        data = LEAVES[:size]
        root = mth(data)
        for index in range(size):
            good = path(index, data)
            leaf = leaf_hash(data[index])
            add(f"valid: leaf {index} of {size}", index, size, leaf, root, good, None,
                f"PATH({index}, D[{size}]) and MTH(D[{size}])")
            if good:
                add(f"rejected: leaf {index} of {size}, last proof hash dropped (wrong length)", index, size, leaf,
                    root, good[:-1], "ProofError", "the valid proof minus its last hash")
                add(f"rejected: leaf {index} of {size}, a proof hash flipped", index, size, leaf, root,
                    [_flip(good[0])] + good[1:], "RootMismatch", "the valid proof, first byte of hash 0 xor 1")
            add(f"rejected: leaf {index} of {size}, an extra proof hash (wrong length)", index, size, leaf, root,
                good + [root], "ProofError", "the valid proof plus the root appended")
            add(f"rejected: leaf {index} of {size}, wrong leaf hash", index, size, _flip(leaf), root, good,
                "RootMismatch", "the valid proof, leaf hash first byte xor 1")
            add(f"rejected: leaf {index} of {size}, wrong root", index, size, leaf, _flip(root), good,
                "RootMismatch", "the valid proof, root first byte xor 1")
            if index + 1 < size:
                want = "ProofError" if len(path(index + 1, data)) != len(good) else "RootMismatch"
                add(f"rejected: the proof of leaf {index} of {size} presented for index {index + 1} (wrong index)",
                    index + 1, size, leaf, root, good, want,
                    f"PATH({index}, D[{size}]) with index {index + 1}; ProofError where PATH({index + 1}, D[{size}]) "
                    "has another length")
            add(f"rejected: leaf {index} of {size} checked at index {size} (index beyond size)", size, size, leaf,
                root, good, "ProofError", "the valid proof with index = size")
            if size + 1 <= len(LEAVES):
                bigger = mth(LEAVES[: size + 1])
                want = "ProofError" if len(path(index, LEAVES[: size + 1])) != len(good) else "RootMismatch"
                add(f"rejected: the proof of leaf {index} in size {size} presented for size {size + 1} (size mismatch)",
                    index, size + 1, leaf, bigger, good, want,
                    f"PATH({index}, D[{size}]) against MTH(D[{size + 1}])")
    empty = mth([])
    add("rejected: any index in the empty tree", 0, 0, leaf_hash(LEAVES[0]), empty, [], "ProofError",
        "index 0, size 0, the empty tree's root")
    add("rejected: the empty tree with a proof", 0, 0, leaf_hash(LEAVES[0]), empty, [empty], "ProofError",
        "index 0, size 0, one hash")
    return {"produced_by": PRODUCED_BY, "leaves": "the CT reference inputs: " + ", ".join(repr(d.hex()) for d in LEAVES),
            "index": "0-based leaf index (the ledger's seq - 1)", "vectors": vectors}


def consistency_vectors() -> dict:
    vectors = []

    def add(desc: str, size1: int, size2: int, root1: bytes, root2: bytes, hashes: list[bytes],
            want_error: str | None, how: str) -> None:
        vectors.append({"desc": desc, "size1": size1, "size2": size2, "root1": root1.hex(), "root2": root2.hex(),
                        "proof": _hex(hashes), "want_error": want_error, "produced": how})

    n_max = len(LEAVES)
    empty = mth([])
    for size2 in range(0, n_max + 1):
        root2 = mth(LEAVES[:size2])
        add(f"valid: empty tree is a prefix of size {size2}", 0, size2, empty, root2, [], None,
            "size1 = 0: the empty proof (RFC 9162 leaves 0 undefined; transparency-dev accepts it)")
        if size2 > 0:
            add(f"rejected: 0 -> {size2} with a non-empty proof", 0, size2, empty, root2, [root2], "ProofError",
                "size1 = 0 with one hash")
            add(f"rejected: 0 -> {size2} with an old root that is not the empty tree's", 0, size2, _flip(empty), root2,
                [], "RootMismatch", "size1 = 0, root1 first byte xor 1")
        for size1 in range(1, size2 + 1):
            root1 = mth(LEAVES[:size1])
            good = proof(size1, LEAVES[:size2])
            add(f"valid: {size1} -> {size2}", size1, size2, root1, root2, good, None,
                f"PROOF({size1}, D[{size2}]), MTH(D[{size1}]), MTH(D[{size2}])")
            add(f"rejected: {size1} -> {size2}, wrong old root", size1, size2, _flip(root1), root2, good,
                "RootMismatch", "the valid proof, root1 first byte xor 1")
            add(f"rejected: {size1} -> {size2}, wrong new root", size1, size2, root1, _flip(root2), good,
                "RootMismatch", "the valid proof, root2 first byte xor 1")
            if good:
                add(f"rejected: {size1} -> {size2}, last proof hash dropped (wrong length)", size1, size2, root1,
                    root2, good[:-1], "ProofError",
                    "the valid proof minus its last hash")
                add(f"rejected: {size1} -> {size2}, a proof hash flipped", size1, size2, root1, root2,
                    good[:-1] + [_flip(good[-1])], "RootMismatch", "the valid proof, last hash first byte xor 1")
            add(f"rejected: {size1} -> {size2}, an extra proof hash (wrong length)", size1, size2, root1, root2,
                good + [root2], "ProofError", "the valid proof plus root2 appended")
            if size1 < size2:
                add(f"rejected: sizes swapped, {size2} -> {size1} (a ledger only grows)", size2, size1, root2, root1,
                    good, "ProofError", f"PROOF({size1}, D[{size2}]) with the sizes and roots swapped")
    return {"produced_by": PRODUCED_BY, "leaves": "the CT reference inputs: " + ", ".join(repr(d.hex()) for d in LEAVES),
            "vectors": vectors}


def main() -> None:
    DATA_DIR.mkdir(exist_ok=True)
    for name, content in (("rfc9162_inclusion.json", inclusion_vectors()),
                          ("rfc9162_consistency.json", consistency_vectors())):
        (DATA_DIR / name).write_text(json.dumps(content, indent=1) + "\n")
        print(f"wrote {DATA_DIR / name}: {len(content['vectors'])} vectors")


if __name__ == "__main__":
    main()
