"""Reading a model store the way an auditor must: read-only, without numpy or torch, with the auditor's code.

Digests recomputed here follow the encodings the server documents (forgetd.server.engine.engine for parameter
digests, RowStore.digest for rows) but share no code with it, so a bug on one side shows as a mismatch.
Every reader raises StoreUnreadable with the file and the reason; the auditor turns that into a finding.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sqlite3
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from forgetd.client.errors import StoreUnreadable

__all__ = ["ROWS_FORMAT", "StoreUnreadable", "artifact_digest", "VAULT_ERASED", "VAULT_ROWS", "first_row_difference", "integrity_problems", "iter_kept_rows",
           "iter_rows", "iter_vault_rows", "live_parameters", "npy_last_row", "read_json", "rows_digest", "sha256_file",
           "vault_keeps_erased", "vault_rows_digest", "vault_rows_file"]

ROWS_FORMAT = "forgetd.rowstore.v1"  # also the rows digest's domain tag, in either format
ROWS_FORMAT_V2 = "forgetd.rowstore.v2"  # rows packed in blocks; erased slots are zeros with live = 0
_NPY_MAGIC = b"\x93NUMPY"
# A vault's rows (forgetd.server.store.vault): format v1 holds a copy in rows.sqlite; format v2 holds only the
# rows the live store erased since the snapshot, in erased.sqlite (table rows(ord, id, y, x)), and its rows are
# the live store's plus those.
VAULT_ROWS, VAULT_ERASED, VAULT_ROW_DIGESTS = "rows.sqlite", "erased.sqlite", "rows.sha256"
_VAULT_V2, _ERASED_FORMAT = "forgetd.vault.v2", "forgetd.vault.erased.v1"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise StoreUnreadable(f"{path}: cannot read it ({exc.strerror})") from None
    return h.hexdigest()


_INC_MAGIC = b"FGDINCZ\0"  # a compressed increments file (forgetd.server.engine.increments_codec)
_INC_HEADER = struct.Struct("<8sI8s8siQQ")  # magic, version, precision, codec, level, P, rows


def artifact_digest(path: Path) -> str:
    """What the replay's artifact digests are (forgetd.server.engine.increments_codec.content_sha256, recomputed
    here): a file's SHA-256, except for a compressed increments file, whose digest covers its format version,
    precision, P, rows and decoded rows, so two zstd versions that encode the same rows differently agree.
    "missing" for a file that cannot be read or decoded: a finding, never a crash."""
    try:
        with open(path, "rb") as f:
            head = f.read(_INC_HEADER.size)
            if not head.startswith(_INC_MAGIC) or len(head) < _INC_HEADER.size:
                return sha256_file(path)
            _magic, version, precision, _codec, _level, params, rows = _INC_HEADER.unpack(head)
            offsets = struct.unpack(f"<{rows + 1}Q", f.read(8 * (rows + 1)))
            import zstandard  # only compressed files need it

            word = precision.rstrip(b"\0").decode()
            h = hashlib.sha256(f"forgetd.increments-content.v{version}:{word}:{params}:{rows}\n".encode())
            dctx = zstandard.ZstdDecompressor()
            for r in range(rows):
                f.seek(offsets[r])
                h.update(dctx.decompress(f.read(offsets[r + 1] - offsets[r])))
            return h.hexdigest()
    except (OSError, StoreUnreadable, struct.error, UnicodeDecodeError, ValueError) as exc:
        return "missing" if isinstance(exc, (OSError, StoreUnreadable)) else f"undecodable ({exc})"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise StoreUnreadable(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise StoreUnreadable(f"{path}: not JSON ({exc})") from None


def npy_last_row(path: Path) -> bytes:
    """The last row of a 2-D little-endian float32 .npy file, as its raw bytes (a shard's live parameters)."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != _NPY_MAGIC:
                raise StoreUnreadable(f"{path}: not a .npy file")
            major = head[6]
            if major == 1:
                header_len = struct.unpack("<H", head[8:10])[0]
                offset = 10
            else:
                f.seek(0)
                head = f.read(12)
                header_len = struct.unpack("<I", head[8:12])[0]
                offset = 12
            f.seek(offset)
            header = ast.literal_eval(f.read(header_len).decode("latin1"))
            shape = tuple(header["shape"])
            if header["descr"] != "<f4" or header["fortran_order"] or len(shape) != 2:
                raise StoreUnreadable(f"{path}: expected a 2-D C-order <f4 array, got {header}")
            rows, cols = shape
            f.seek(offset + header_len + (rows - 1) * cols * 4)
            data = f.read(cols * 4)
    except OSError as exc:
        raise StoreUnreadable(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise StoreUnreadable(f"{path}: malformed .npy header ({exc})") from None
    if len(data) != cols * 4:
        raise StoreUnreadable(f"{path}: truncated: {len(data)} bytes of the last row, expected {cols * 4}")
    return data


def live_parameters(root: Path) -> tuple[int, str, tuple[str, ...]]:
    """(version, model digest, shard digests) of the store's live parameters, from CURRENT.json's files."""
    manifest = read_json(root / "CURRENT.json")
    try:
        files = manifest["files"]
        version = int(manifest["version"])
        shards = sorted(int(k[5:].split(".")[0]) for k in files if k.startswith("shard") and k.endswith(".params"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreUnreadable(f"{root / 'CURRENT.json'}: malformed manifest ({exc})") from None
    if shards != list(range(len(shards))) or not shards:
        raise StoreUnreadable(f"{root / 'CURRENT.json'}: shard parameter files {shards} are not 0..K-1")
    model = hashlib.sha256()
    digests = []
    for k in shards:
        name = files[f"shard{k}.params"]
        if not isinstance(name, str) or "/" in name:
            raise StoreUnreadable(f"{root / 'CURRENT.json'}: shard{k}.params names {name!r}, not a file in artifacts/")
        live = npy_last_row(root / "artifacts" / name)
        model.update(live)
        digests.append(hashlib.sha256(live).hexdigest())
    return version, model.hexdigest(), tuple(digests)


def _connect(path: Path, *, immutable: bool) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreUnreadable(f"{path}: no such file")
    # A vault never changes: immutable=1 reads it without creating -wal/-shm files beside it. The live rows
    # may be written by a running daemon: read-only mode still takes SQLite's locks.
    mode = "immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?{mode}", uri=True)


def integrity_problems(path: Path, *, immutable: bool = False, limit: int = 5) -> list[str]:
    """What SQLite's `PRAGMA integrity_check` finds in the file (at most `limit` lines); [] when it is sound.

    Reading every row is not enough: a damaged index or free-list page reads back fine until the page is
    needed, and then the daemon, not the audit, finds it."""
    try:
        conn = _connect(path, immutable=immutable)
        try:
            lines = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({int(limit)})")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [f"cannot be checked: {exc}"]
    return [] if lines == ["ok"] else lines


def iter_rows(path: Path, *, immutable: bool = False) -> Iterator[tuple[int, Any, Any, Any]]:
    """(ord, id, y, x) of every row, in insertion order. Values are as stored: check their types."""
    try:
        conn = _connect(path, immutable=immutable)
        try:
            yield from _stored_rows(conn, path, dict(conn.execute("SELECT key, value FROM meta").fetchall()))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"{path}: not a readable row store ({exc})") from None


def _stored_rows(conn: sqlite3.Connection, path: Path, meta: dict[str, str]) -> Iterator[tuple[int, Any, Any, Any]]:
    """(ord, id, y, x) of every stored row in ordinal order, from a v1 file (a record a row) or a v2 one (blocks
    of rows_per_block slots: live flags, <i8 labels, <u4 id ends, UTF-8 ids end to end, <f4 features)."""
    if meta.get("format") != ROWS_FORMAT_V2:
        yield from conn.execute("SELECT ord, id, y, x FROM rows ORDER BY ord")
        return
    try:
        per_block, width = int(meta["rows_per_block"]), 4 * int(meta["num_features"])
        for blk, live, ys, id_ends, ids, x in conn.execute(
                "SELECT blk, live, y, id_ends, ids, x FROM blocks ORDER BY blk"):
            ends = struct.unpack(f"<{len(live)}I", id_ends)
            for slot in (s for s in range(len(live)) if live[s]):
                sid = ids[ends[slot - 1] if slot else 0: ends[slot]].decode("utf-8")
                label = struct.unpack_from("<q", ys, 8 * slot)[0]
                yield blk * per_block + slot, sid, label, x[width * slot: width * (slot + 1)]
    except (KeyError, ValueError, TypeError, struct.error) as exc:
        raise StoreUnreadable(f"{path}: a malformed row store block ({exc})") from None


def vault_keeps_erased(record: Any) -> bool:
    """Whether a vault record (as the ledger committed it) is of a vault that keeps only the erased rows."""
    return isinstance(record, Mapping) and record.get("format") == _VAULT_V2


def vault_rows_file(vault: Path, record: Any) -> Path:
    """The file that holds a vault's own rows: erased.sqlite (v2) or rows.sqlite (v1)."""
    return vault / (VAULT_ERASED if vault_keeps_erased(record) else VAULT_ROWS)


def iter_vault_rows(vault: Path, record: Any, live: Path) -> Iterator[tuple[int, Any, Any, Any]]:
    """(ord, id, y, x) of every row of a vault's snapshot, in ordinal order. For a v2 vault: the live rows, read
    first, with the kept ones (read second) in their places: a row erased between the two reads is in both."""
    if not vault_keeps_erased(record):
        yield from iter_rows(vault / VAULT_ROWS, immutable=True)
        return
    rows = {row[0]: row for row in iter_rows(live)}
    rows.update((row[0], row) for row in iter_kept_rows(vault / VAULT_ERASED))
    for ord_ in sorted(rows):
        yield rows[ord_]


def iter_kept_rows(keeper: Path) -> Iterator[tuple[int, Any, Any, Any]]:
    """(ord, id, y, x) of every row a v2 vault's erased.sqlite keeps, in ordinal order."""
    try:
        conn = _connect(keeper, immutable=False)
        try:
            fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if fmt is None or fmt[0] != _ERASED_FORMAT:
                raise StoreUnreadable(f"{keeper}: format {fmt[0] if fmt else None!r}, expected {_ERASED_FORMAT!r}")
            yield from conn.execute("SELECT ord, id, y, x FROM rows ORDER BY ord").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"{keeper}: not a readable vault keeper file ({exc})") from None


def first_row_difference(vault: Path, record: Any, live: Path) -> tuple[str, str, str] | None:
    """(what, expected, actual) for the first row of a v2 vault's snapshot that is not the one its rows.sha256
    names (per row: the ordinal u64 BE, then SHA-256 over the ordinal u64 BE, the id's UTF-8 length u32 BE and
    bytes, the <f4 features and the <i8 label); None when every row matches (or the file is unreadable)."""
    try:
        recorded = (vault / VAULT_ROW_DIGESTS).read_bytes()
    except OSError:
        return None
    want = {struct.unpack(">Q", recorded[i: i + 8])[0]: recorded[i + 8: i + 40] for i in range(0, len(recorded), 40)}
    seen = set()
    for ord_, sid, y, x in iter_vault_rows(vault, record, live):
        encoded = sid.encode("utf-8") if isinstance(sid, str) else b""
        h = hashlib.sha256(struct.pack(">QI", int(ord_), len(encoded)) + encoded + bytes(x) + struct.pack("<q", int(y)))
        if ord_ not in want:
            return f"row ord {ord_} is not in", "no row", f"ord {ord_}"
        if h.digest() != want[ord_]:
            return f"row ord {ord_} differs from its row in", want[ord_].hex(), h.hexdigest()
        seen.add(ord_)
    missing = sorted(set(want) - seen)
    return (f"row ord {missing[0]} is missing from", f"ord {missing[0]}", "no row") if missing else None


def vault_rows_digest(vault: Path, record: Any, live: Path) -> tuple[str, int]:
    """(digest, row count) of a vault's snapshot rows, as the ledger's vault record commits them."""
    if not vault_keeps_erased(record):
        return rows_digest(vault / VAULT_ROWS, immutable=True)
    try:
        conn = _connect(live, immutable=False)
        try:
            features = int(dict(conn.execute("SELECT key, value FROM meta").fetchall())["num_features"])
        finally:
            conn.close()
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise StoreUnreadable(f"{live}: not a readable row store ({exc})") from None
    return _digest(live, features, [(sid, y, x) for _o, sid, y, x in iter_vault_rows(vault, record, live)])


def rows_digest(path: Path, *, immutable: bool = False) -> tuple[str, int]:
    """(digest, row count) of a row store, as RowStore.digest documents it (recomputed independently)."""
    try:
        conn = _connect(path, immutable=immutable)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") not in (ROWS_FORMAT, ROWS_FORMAT_V2):
                raise StoreUnreadable(f"{path}: row store format {meta.get('format')!r}, expected {ROWS_FORMAT!r} "
                                      f"or {ROWS_FORMAT_V2!r}")
            rows = [(sid, y, x) for _o, sid, y, x in _stored_rows(conn, path, meta)]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"{path}: not a readable row store ({exc})") from None
    return _digest(path, int(meta["num_features"]), rows)


def _digest(path: Path, features: int, rows: list[tuple[Any, Any, Any]]) -> tuple[str, int]:
    h = hashlib.sha256(ROWS_FORMAT.encode() + b"\0")
    h.update(features.to_bytes(8, "big"))
    h.update(struct.pack(">Q", len(rows)))
    for sid, _y, x in rows:
        if not isinstance(sid, str) or not isinstance(x, bytes) or len(x) != 4 * features:
            raise StoreUnreadable(f"{path}: a malformed row (id {sid!r})")
        b = sid.encode("utf-8")
        h.update(struct.pack(">I", len(b)))
        h.update(b)
    for _sid, _y, x in rows:
        h.update(x)
    for _sid, y, _x in rows:
        h.update(struct.pack("<q", int(y)))
    return h.hexdigest(), len(rows)
