"""The model store on disk: its layout, crash-safe file writes, and the manifest that names the live version.

Every mutable artifact is copy-on-write: a forget writes *new* files (named after the version that wrote
them), fsyncs them, and then switches `CURRENT.json` (the manifest: live version, the tag of the request that
produced it, the artifact files it uses, the DPUS bookkeeping) with one atomic rename. A crash before the
rename leaves the old version intact plus some unreferenced files, which `collect_garbage` removes on the
next open; a crash after it leaves the new version complete. Training builds the whole store in a hidden
sibling directory and renames it into place, so a crashed training never leaves a store that opens.

    store/
      store.json          immutable: format, config, what training measured (m, sizes, accuracies, device)
      genesis.json        immutable: the record the ledger's genesis event commits
      layout.npz          immutable: per shard, its members' row positions in slice order and slice bounds
      index/shard<k>.npz  immutable: sample -> optimizer steps whose batch held it (CSR)
      test.npz            the test split (never forgotten, so never rewritten)
      rows.sqlite         the erasable training rows (RowStore)
      refs.npy            immutable: HMAC(subject key, id) per training row, so no file holds an id
      keys/subject.key    the deployment's HMAC key (0600)
      artifacts/          checkpoints and increments, one file per shard (per step for increments) per version
      CURRENT.json        the manifest (see Manifest)
      ledger.sqlite       written by the daemon, never by the engine
"""

from __future__ import annotations

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
    "fsync_dir",
    "collect_garbage",
]

FORMAT = "forgetd.store.v1"


@dataclass(frozen=True)
class StorePaths:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "store.json"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

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
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def subject_key(self) -> Path:
        return self.root / "keys" / "subject.key"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def manifest(self) -> Path:
        return self.root / "CURRENT.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    def index(self, shard: int) -> Path:
        return self.root / "index" / f"shard{shard}.npz"

    def artifact(self, name: str) -> Path:
        return self.artifacts / name


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
        atomic_write_json(path, self.to_json())


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
