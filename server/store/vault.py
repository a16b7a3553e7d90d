"""The audit vault: a snapshot of a store's state that `forgetd verify` can replay the ledger from.

Why it exists: replaying forget k re-reads training rows that forget k+5 later erased from the live store,
so a replay needs the rows as they were at its starting point; privacy needs them gone. The vault squares
the two: one snapshot, in `store/audit/<name>/`, of the state the ledger last vouched for (the genesis
state, or the state the latest `audit.verified` event sealed). A seal (`forgetd verify --seal`) replaces it
with a snapshot of the verified current state, so the rows forgotten since the previous snapshot are gone
from the vault too; until then `forgetd verify` counts them as pending.

    audit/<name>/
      vault.json                  the record below (also committed in the ledger event that names the vault)
      store.json genesis.json layout.npz test.npz refs.npy index/shard<k>.npz
      artifacts/<file>            only the files the snapshot's manifest names
      CURRENT.json                the manifest of the snapshot's version
      erased.sqlite               (format v2) the training rows the live store erased since the snapshot
      rows.sha256                 (format v2) a SHA-256 per row of the snapshot, to name the first that differs
      rows.sqlite                 (format v1) a consistent copy (SQLite's backup API) of the training rows

Immutable and copy-on-write files are hard links (the engine never rewrites a file in place, it writes new
files and renames), so a snapshot of a store with gigabytes of increments costs directory entries, not
copies. The rows are the one mutable file. A v2 vault (every store whose row store is in the block format)
holds only the rows erased since its snapshot (erased.py): its rows are the live store's plus those, so it
costs the forgotten rows, not a second copy of the data. A v1 vault (a store in the v1 row format) copies
the rows file. A snapshot is built in a hidden sibling directory and renamed into place, so a vault either
exists whole or not at all; a v2 vault's keeper file is made first, so the erases that follow the start of
a snapshot are kept in it.

The record's digests are what the ledger commits: SHA-256 of every file but the rows, plus the content
digest of the snapshot's rows (RowStore.digest's encoding), since an SQLite file's bytes are not a function
of its rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetd.server.errors import StoreError
from forgetd.server.store.erased import ERASED, ROW_DIGESTS, create_erased, materialize, row_digests, snapshot_rows
from forgetd.server.store.row_blocks import FORMAT_V2
from forgetd.server.store.rows import RowStore, content_digest
from forgetd.server.store.layout import Manifest, StorePaths, atomic_write_json, fsync_dir, sha256_file
from forgetd.server.store.space import full_as_no_space

__all__ = ["GENESIS_VAULT", "VaultRecord", "create_vault", "vault_rows", "remove_vault", "vault_dir", "vault_names",
           "link_or_copy", "sha256_file", "sweep_stale"]

GENESIS_VAULT = "genesis"
RECORD = "vault.json"
ROWS = StorePaths(Path()).rows.name  # the file a v1 vault copies rather than links, and removes first
FORMAT = "forgetd.vault.v2"  # rows: the live store's plus erased.sqlite's
FORMAT_V1 = "forgetd.vault.v1"  # rows: a copy in rows.sqlite
FORMATS = (FORMAT, FORMAT_V1)


@dataclass(frozen=True)
class VaultRecord:
    """What a vault holds, as the ledger commits it."""

    name: str
    version: int  # the model version of the snapshot (0 for genesis)
    files: dict[str, str]  # path inside the vault -> hex SHA-256, every file but the rows
    rows_digest: str  # RowStore.digest() of the vault's rows.sqlite
    rows: int  # training rows the vault holds
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "name": self.name, "version": self.version,
                "files": dict(sorted(self.files.items())), "rows_digest": self.rows_digest, "rows": self.rows}

    @classmethod
    def from_json(cls, data: Any) -> VaultRecord:
        try:
            if data["format"] not in FORMATS:
                raise StoreError(f"vault record format {data['format']!r}; this forgetd reads {', '.join(FORMATS)}")
            return cls(str(data["name"]), int(data["version"]), {str(k): str(v) for k, v in data["files"].items()},
                       str(data["rows_digest"]), int(data["rows"]), str(data["format"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"unreadable vault record ({exc})") from None


def sweep_stale(store_dir: str | Path) -> list[str]:
    """Remove the hidden build and scratch directories (`.<name>.building-<pid>-...`, `.replay-<pid>-...`) of
    processes that are gone: a killed audit must not leave a copy of the rows behind for good."""
    root = StorePaths(Path(store_dir)).audit
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        if not (path.is_dir() and path.name.startswith(".")):
            continue
        try:
            pid = int(path.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            _remove_tree(path)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def vault_dir(store_dir: str | Path, name: str) -> Path:
    return StorePaths(Path(store_dir)).audit / name


def vault_names(store_dir: str | Path) -> list[str]:
    """The vaults present (hidden build and scratch directories excluded)."""
    root = StorePaths(Path(store_dir)).audit
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one (same device), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def vault_rows(vault: Path, scratch_rows: Path) -> None:
    """Write the vault's rows as a row store file at `scratch_rows` (a replay's private scratch): a copy of a
    v1 vault's rows.sqlite, or the live rows beside the vault plus a v2 vault's erased ones."""
    erased = vault / ERASED
    if erased.is_file():
        live = StorePaths(vault.parent.parent).rows  # audit/<name> lives in the store's root
        materialize(live, erased, scratch_rows, copy_rows)
    else:
        copy_rows(vault / ROWS, scratch_rows)


def copy_rows(src: Path, dst: Path) -> None:
    """A consistent copy of a live row store, even while the daemon erases rows (SQLite's backup API).
    NoSpace when the copy does not fit."""
    with full_as_no_space(dst.parent, f"copying {src.name}"):
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
            # One file, no -wal beside it: a vault is only ever read.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
            source.close()
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())


def create_vault(store_dir: str | Path, name: str) -> VaultRecord:
    """Snapshot the store's live state into audit/<name> (replacing a vault of that name) and return its record.

    The caller makes sure the store does not change meanwhile (the daemon at genesis holds its runtime lock;
    `forgetd verify --seal` checks the snapshot against the state it verified and refuses a moving store).
    """
    if not name or name.startswith(".") or "/" in name:
        raise StoreError(f"vault name {name!r} must be a plain, non-hidden directory name")
    paths = StorePaths(Path(store_dir))
    root = paths.audit
    root.mkdir(exist_ok=True)
    sweep_stale(paths.root)
    tmp = root / f".{name}.building-{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir()
    try:
        keeps = _keeps_erased(paths.rows)
        if keeps is not None:
            create_erased(tmp / ERASED, keeps)  # before the snapshot: from now on every erase is kept here
            fsync_dir(tmp)
        manifest = Manifest.read(paths.manifest)
        _snapshot(paths, StorePaths(tmp), manifest, copy=keeps is None)
        if Manifest.read(paths.manifest).to_json() != manifest.to_json():
            raise StoreError(f"{paths.root}: the store's version changed while it was being snapshotted; retry "
                             "once the daemon's forget has finished")
        record = _record(tmp, name, manifest.version, paths.rows if keeps is not None else None)
        atomic_write_json(tmp / RECORD, record.to_json())
        fsync_dir(tmp)
        final = root / name
        if final.exists():
            _remove_tree(final)
        os.rename(tmp, final)
        fsync_dir(root)
        return record
    except BaseException:
        _remove_tree(tmp)
        raise


def _keeps_erased(rows: Path) -> int | None:
    """The feature count when the live row store is in the block format (a v2 vault keeps its erased rows),
    None for a v1 store (the vault copies the rows)."""
    try:
        conn = sqlite3.connect(f"file:{rows}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{rows}: not a readable row store ({exc})") from None
    return int(meta["num_features"]) if meta.get("format") == FORMAT_V2 else None


def _snapshot(paths: StorePaths, snap: StorePaths, manifest: Manifest, *, copy: bool) -> None:
    """Link the store's files of `manifest`'s version into the vault folder `snap`; copy its rows if `copy`."""
    snap.artifacts.mkdir()
    snap.index_dir.mkdir()
    for src, dst in zip(paths.immutable(), snap.immutable()):
        link_or_copy(src, dst)
    for index in sorted(paths.index_dir.glob("shard*.npz")):
        link_or_copy(index, snap.index_dir / index.name)
    for file in sorted(set(manifest.files.values())):
        link_or_copy(paths.artifact(file), snap.artifact(file))
    shutil.copyfile(paths.manifest, snap.manifest)
    if copy:
        copy_rows(paths.rows, snap.rows)
    fsync_dir(snap.artifacts)


def read_record(store_dir: str | Path, name: str) -> VaultRecord:
    path = vault_dir(store_dir, name) / RECORD
    try:
        return VaultRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable vault record ({exc})") from None


def remove_vault(store_dir: str | Path, name: str) -> None:
    """Delete a vault: its rows copy goes with it (the other files are links the live store may share)."""
    path = vault_dir(store_dir, name)
    if path.exists():
        _remove_tree(path)
        fsync_dir(path.parent)


def _record(folder: Path, name: str, version: int, live_rows: Path | None) -> VaultRecord:
    """The record of the vault being built in `folder`; `live_rows`: the live row file a v2 vault's rows are
    read through (None: a v1 vault, with its own copy)."""
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (ROWS, RECORD, ERASED)
    }
    if live_rows is not None:
        ords, ids, X, y = snapshot_rows(live_rows, folder / ERASED)
        digests = folder / ROW_DIGESTS
        with full_as_no_space(folder, f"writing {ROW_DIGESTS}"), open(digests, "xb") as f:
            f.write(row_digests(ords, ids, X, y))
            f.flush()
            os.fsync(f.fileno())
        files[ROW_DIGESTS] = sha256_file(digests)
        return VaultRecord(name, version, files, content_digest(X.shape[1], ids, X, y), len(ids))
    with RowStore.open(folder / ROWS) as rows:
        digest, count = rows.digest(), len(rows)
    # RowStore.open switches the copy back to WAL; leave a single quiescent file behind.
    conn = sqlite3.connect(folder / ROWS)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return VaultRecord(name, version, files, digest, count, FORMAT_V1)


def _remove_tree(path: Path) -> None:
    # The rows it holds are removed first and on their own: if anything below fails, they are gone already.
    for rows in [*path.glob(f"{ROWS}*"), *path.glob(f"{ERASED}*")]:
        rows.unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)
