"""RFC 9162 Merkle trees over ledger leaves: hashing, an in-memory tree that makes proofs, pure verifiers.

Hashing is domain-separated as in RFC 9162 section 2.1.1: a leaf is SHA-256(0x00 || data), an interior node
SHA-256(0x01 || left || right), and the empty tree's root is SHA-256 of the empty string. The ledger's
chain hash uses a third prefix (0x02) so that no chain value can be mistaken for a tree node or leaf.

The verifiers follow transparency-dev/merkle: functions that compute are named `root_from_...`, functions
that check are named `verify_...` and raise (ProofError for a failed precondition, with both numbers in the
message; RootMismatch carrying the expected and computed roots). They need nothing but hashes, so a client
holding an old head can check a receipt without the ledger file. Indices here are 0-based, as in the RFC;
the ledger's seq n is leaf index n-1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from .errors import ProofError, RootMismatch

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
CHAIN_PREFIX = b"\x02"
EMPTY_ROOT = hashlib.sha256(b"").digest()
ZERO_CHAIN = bytes(HASH_SIZE)

_sha256 = hashlib.sha256


def hash_leaf(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the Merkle leaf of one envelope."""
    return _sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()


def hash_chain(seq: int, previous: bytes, leaf: bytes) -> bytes:
    """SHA-256(0x02 || seq as 8 bytes big-endian || previous chain hash || leaf hash)."""
    return _sha256(CHAIN_PREFIX + seq.to_bytes(8, "big") + previous + leaf).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The RFC 9162 root over leaf hashes, bottom up (an odd node is carried up unchanged: same root)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    sha = _sha256
    node = NODE_PREFIX
    while len(level) > 1:
        carry = level[-1] if len(level) & 1 else None
        it = iter(level)
        level = [sha(node + a + b).digest() for a, b in zip(it, it)]
        if carry is not None:
            level.append(carry)
    return level[0]


class MerkleTree:
    """Leaf hashes plus every complete power-of-two subtree above them, so roots and proofs for any prefix
    size cost O(log^2 n) hashes, and an append costs O(1) amortised.

    `levels[k][i]` is the hash of the 2^k leaves starting at leaf i * 2^k.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        self.extend(leaves)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def __len__(self) -> int:
        return len(self.levels[0])

    def append(self, leaf_hash: bytes) -> None:
        levels = self.levels
        levels[0].append(leaf_hash)
        k = 0
        while len(levels[k]) % 2 == 0:
            if k + 1 == len(levels):
                levels.append([])
            row = levels[k]
            levels[k + 1].append(hash_children(row[-2], row[-1]))
            k += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaves, level by level (loading 100k leaves this way is several times faster)."""
        new = list(leaf_hashes)
        if len(new) < 4:
            for leaf in new:
                self.append(leaf)
            return
        levels = self.levels
        levels[0].extend(new)
        sha, node = _sha256, NODE_PREFIX
        k = 0
        while len(levels[k]) >= 2:
            if k + 1 == len(levels):
                levels.append([])
            row, up = levels[k], levels[k + 1]
            end = len(row) - len(row) % 2  # levels[k + 1] always holds len(levels[k]) // 2 nodes
            if 2 * len(up) == end:
                break  # this level gained no pair, so no level above gains a node (a small batch stops low)
            up.extend([sha(node + row[i] + row[i + 1]).digest() for i in range(2 * len(up), end, 2)])
            k += 1

    def leaf(self, index: int) -> bytes:
        return self.levels[0][index]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range that RFC 9162's splitting produces (start aligned to the split)."""
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.levels[n.bit_length() - 1][start // n]
        k = split_point(n)
        return hash_children(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        # RFC 9162's splitting of a prefix of `size` leaves yields one complete subtree per set bit of `size`,
        # largest first; the root folds them from the right (what subtree(0, size) computes, without recursion).
        levels, start, nodes = self.levels, 0, []
        for k in range(size.bit_length() - 1, -1, -1):
            if size >> k & 1:
                nodes.append(levels[k][start >> k])
                start += 1 << k
        acc = nodes.pop()
        sha, node = _sha256, NODE_PREFIX
        while nodes:
            acc = sha(node + nodes.pop() + acc).digest()
        return acc

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[0:size]), ordered from the leaf upwards."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"index {index} out of range for tree size {size}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = split_point(hi - lo)
            if index < lo + k:
                path.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(old_size, D[0:new_size]); empty when old_size is 0 or equals new_size."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} is not within 0..{new_size} (the new size)")
        path: list[bytes] = []
        if old_size in (0, new_size):
            return path
        lo, hi, m, whole = 0, new_size, old_size, True
        while m != hi - lo:
            k = split_point(hi - lo)
            if m <= k:
                path.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree(lo, lo + k))
                lo += k
                m -= k
                whole = False
        if not whole:
            path.append(self.subtree(lo, hi))
        path.reverse()
        return path

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is not within 0..{self.size} (the leaves held)")


class TreeSnapshot:
    """The first `size` leaves of a MerkleTree that may go on growing in another thread. Appends never change a
    node within those leaves, so proofs against any size up to `size` can be built from the live tree without
    holding whatever lock serialises its appends (a caller asking for thousands of proofs never holds them up)."""

    def __init__(self, tree: MerkleTree, size: int) -> None:
        tree._check_size(size)
        self._tree = tree
        self.size = size

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) for a size within the snapshot."""
        self._check(size)
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) for a new size within the snapshot."""
        self._check(new_size)
        return self._tree.consistency_proof(old_size, new_size)

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is not within 0..{self.size} (the snapshot's size)")


# --- verification: hashes only -----------------------------------------------------------------------------


def _inclusion_decomposition(index: int, size: int) -> tuple[int, int]:
    """(inner, border): proof hashes below the point where the leaf's path meets the right border, and on it."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = hash_children(seed, h) if (index >> i) & 1 == 0 else hash_children(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = hash_children(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = hash_children(h, seed)
    return seed


def _check_hash(what: str, h: object) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        shown = f"{len(h)} bytes" if isinstance(h, (bytes, bytearray)) else type(h).__name__
        raise ProofError(f"{what} is {shown}, want {HASH_SIZE} bytes")


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        _check_hash(f"{what}[{i}]", h)


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for leaf `index` (0-based) in a tree of `size` leaves."""
    if size <= 0:
        raise ProofError(f"index {index} out of range for tree size {size}: an empty tree includes nothing")
    if not 0 <= index < size:
        raise ProofError(f"index {index} out of range for tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hashes("proof", proof)
    inner, border = _inclusion_decomposition(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border} (index {index}, size {size})")
    root = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(root, proof[inner:])


def verify_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise unless `proof` shows leaf `index` (0-based) with `leaf_hash` is in the tree of `size` with `root`."""
    computed = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if computed != root:
        raise RootMismatch(expected=bytes(root), computed=computed)


def verify_consistency_proof(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Raise unless `proof` shows the tree (size1, root1) is a prefix of the tree (size2, root2).

    RFC 9162 2.1.4.2, in transparency-dev/merkle's formulation. One strengthening: for size1 = 0, root1 must
    be the empty tree's root (the RFC leaves that case undefined; any other root1 is not a real tree).
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"sizes must be >= 0, got {size1} and {size2}")
    if size2 < size1:
        raise ProofError(f"new size {size2} < old size {size1}: a ledger only grows")
    _check_hash("old root", root1)
    _check_hash("new root", root2)
    _check_hashes("proof", proof)
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof has {len(proof)} hashes, want 0")
        if root1 != root2:
            raise RootMismatch(expected=bytes(root1), computed=bytes(root2))
        return
    if size1 == 0:
        if proof:
            raise ProofError(f"old size is 0 but the proof has {len(proof)} hashes, want 0")
        if root1 != EMPTY_ROOT:
            raise RootMismatch(expected=EMPTY_ROOT, computed=bytes(root1), what="empty tree root")
        return
    if not proof:
        raise ProofError(f"empty proof for sizes {size1} -> {size2}, want at least 1 hash")

    inner, border = _inclusion_decomposition(size1 - 1, size2)
    shift = ((size1 & -size1).bit_length()) - 1  # trailing zeros of size1
    inner -= shift
    # The proof starts with the root of the subtree of 2^shift leaves that ends at size1, unless size1 is
    # exactly that power of two: then that subtree is the whole old tree and root1 stands in for it.
    if size1 == 1 << shift:
        seed, start = bytes(root1), 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"wrong proof size {len(proof)}, want {start + inner + border} (sizes {size1} -> {size2})"
        )
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise RootMismatch(expected=bytes(root1), computed=hash1, what="old root")
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise RootMismatch(expected=bytes(root2), computed=hash2, what="new root")
