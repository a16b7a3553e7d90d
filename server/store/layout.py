"""The model store on disk: its layout, crash-safe file writes, and the manifest that names the live version.

Every mutable artifact is copy-on-write: a forget writes *new* files (named after the version that wrote
them), fsyncs them, and then switches `CURRENT.json` (the manifest: live version, the batch tag of the
requests that produced it (store/batch_tag.py), the artifact files it uses, the DPUS bookkeeping) with one
atomic rename. A crash before the rename leaves the old version intact plus some unreferenced files, which
`collect_garbage` removes on the next open; a crash after it leaves the new version complete. Training
builds the whole store in a hidden sibling directory and renames it into place, so a crashed training never
leaves a store that opens.

    store/
      store.json          immutable: format, config, what training measured (m, sizes, accuracies, device)
      genesis.json        immutable: the record the ledger's genesis event commits
      encoder.json        immutable: the feature encoder, raw row -> features (forgetd.server.data.encoder)
      layout.npz          immutable: per shard, its members' row positions in slice order and slice bounds
      index/shard<k>.npz  immutable: sample -> optimizer steps whose batch held it (CSR)
      test.npz            the test split (never forgotten, so never rewritten)
      rows.sqlite         the erasable training rows (RowStore)
      refs.npy            immutable: subject_ref(subject key, id) per training row, so no file holds an id
      keys/subject.key    the deployment's HMAC key (0600)
      keys/head_ed25519.key  the key that signs ledger heads (made by the daemon)
      artifacts/          checkpoints and increments, one file per shard (per step for increments) per version
      CURRENT.json        the manifest (see Manifest)
      ledger.sqlite       written by the daemon, never by the engine
      writer.pid          the process holding the store's writer lock (store/lock.py), for error messages
      audit/<name>/       the audit vaults (store/vault.py)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.server.errors import StoreError

__all__ = [
    "FORMAT",
    "Manifest",
    "StorePaths",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_durable",
    "save_array",
    "sha256_file",
    "check_committed",
    "fsync_dir",
    "collect_garbage",
    "params_artifact",
    "optim_artifact",
    "increments_artifact",
    "versioned_file",
]

FORMAT = "forgetd.store.v1"


@dataclass(frozen=True)
class StorePaths:
    """Every path of a store (the tree above), so no other module spells a file name of its own. An audit
    vault has the same tree: StorePaths(vault_dir) names its files too."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "store.json"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

    @property
    def encoder(self) -> Path:
        """The fitted feature encoder (canonical JSON), so Predict can take raw records; genesis commits it."""
        return self.root / "encoder.json"

    @property
    def layout(self) -> Path:
        return self.root / "layout.npz"

    @property
    def test(self) -> Path:
        return self.root / "test.npz"

    @property
    def rows(self) -> Path:
        return self.root / "rows.sqlite"

    @property
    def refs(self) -> Path:
        return self.root / "refs.npy"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def subject_key(self) -> Path:
        return self.keys / "subject.key"

    @property
    def head_key(self) -> Path:
        """The Ed25519 key that signs ledger heads; the daemon makes it on its first start."""
        return self.keys / "head_ed25519.key"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def manifest(self) -> Path:
        return self.root / "CURRENT.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def writer_pid(self) -> Path:
        """Where the holder of the writer lock records its process id (store/lock.py)."""
        return self.root / "writer.pid"

    @property
    def audit(self) -> Path:
        """Where the audit vaults live (store/vault.py), one folder each."""
        return self.root / "audit"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    def index(self, shard: int) -> Path:
        return self.index_dir / f"shard{shard}.npz"

    def artifact(self, name: str) -> Path:
        return self.artifacts / name

    def immutable(self) -> tuple[Path, ...]:
        """The files training writes once and nothing rewrites (the index files aside): what a vault links."""
        return (self.meta, self.genesis, self.encoder, self.layout, self.test, self.refs)


def params_artifact(shard: int) -> str:
    """The logical name of a shard's checkpoint parameters (a Manifest.files key)."""
    return f"shard{shard}.params"


def optim_artifact(shard: int) -> str:
    """The logical name of a shard's checkpoint Adam state."""
    return f"shard{shard}.optim"


def increments_artifact(shard: int, step: int) -> str:
    """The logical name of a shard's recorded increments of step s."""
    return f"shard{shard}.step{step}.inc"


def versioned_file(logical: str, version: int) -> str:
    """The file under artifacts/ that holds `logical` as the version that wrote it wrote it (copy-on-write)."""
    return f"{logical}.v{version}.npy"


@dataclass
class Manifest:
    """The live version. Rewritten (atomically) by every forget; the only mutable file besides the rows.

    `files` maps logical artifact names ("shard0.params", "shard0.step3.inc", ...) to file names under
    artifacts/. `subtracted[k]` lists shard k's optimizer steps whose increment DPUS has already removed
    (each step is subtracted once, ever, until a retrain re-records it). `forgotten` holds the training-row
    positions of forgotten samples, never their ids.
    """

    version: int
    tag: str | None
    files: dict[str, str]
    subtracted: dict[int, list[int]] = field(default_factory=dict)
    forgotten: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "tag": self.tag,
            "files": dict(sorted(self.files.items())),
            "subtracted": {str(k): sorted(v) for k, v in sorted(self.subtracted.items())},
            "forgotten": sorted(self.forgotten),
        }

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise StoreError(f"{path}: format {data.get('format')!r}; this forgetd reads {FORMAT}")
            return cls(
                version=int(data["version"]),
                tag=data["tag"],
                files=dict(data["files"]),
                subtracted={int(k): list(v) for k, v in data["subtracted"].items()},
                forgotten=list(data["forgotten"]),
            )
        except FileNotFoundError:
            raise StoreError(f"{path.parent}: no {path.name}; not a forgetd store, or its training did not finish") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path}: unreadable manifest ({exc})") from None

    def write(self, path: Path) -> None:
        # Compact: every forget rewrites the manifest, whose forgotten and subtracted lists grow with every
        # forget; indented, json's pure-Python encoder spent ~40% of a small batch's CPU writing one int a line.
        atomic_write_bytes(path, (json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")) + "\n").encode())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes | memoryview) -> None:
    """Write a *new* file and fsync it (its directory entry is made durable by the caller's fsync_dir)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees either the old or the new content, even across a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def check_committed(paths: StorePaths, artifact: str, path: Path, data: bytes) -> None:
    """StoreError when `data` (read from `path`) is not the file genesis.json committed as `artifact`, so a
    daemon refuses at start what `forgetd verify` would fail. No record (a store trained before the artifact
    was committed, or no genesis.json yet): nothing to compare with."""
    try:
        recorded = json.loads(paths.genesis.read_bytes())["artifacts"][artifact]
    except (OSError, ValueError, KeyError, TypeError):
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise StoreError(f"{path}: sha256 {actual} is not the {recorded} genesis committed; the file was changed "
                         "after training: restore it from the audit vault or a backup, and run `forgetd verify`")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read a MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_array(path: Path, array: np.ndarray) -> None:
    """A new .npy file, fsynced; np.load(path, mmap_mode="r") reads it back without copying."""
    with open(path, "xb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def collect_garbage(paths: StorePaths, manifest: Manifest) -> list[str]:
    """Delete artifacts the live manifest does not name (left by a crash or superseded) and stray temp files."""
    live = set(manifest.files.values())
    removed = []
    if paths.artifacts.is_dir():
        for p in paths.artifacts.iterdir():
            if p.name not in live:
                p.unlink(missing_ok=True)
                removed.append(p.name)
    for p in paths.root.glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed
