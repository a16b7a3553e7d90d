"""Check 2, genesis: the vault replay starts from is the one the ledger committed, file by file.

The base is audit/genesis with the genesis event's record, or the vault the latest audit.verified sealed.
Every file's SHA-256, the rows' content digest and the live parameters must be what that event recorded;
for the genesis vault also the initial checkpoints and increments genesis.engine.artifacts lists; and the
feature encoder, live and in the vault, the one genesis committed (encoder.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetd.client.audit import store_reader
from forgetd.client.audit.encoder import check_encoder
from forgetd.client.audit.events import Events
from forgetd.client.audit.report import CheckResult, Findings, sha256_or_missing
from forgetd.client.errors import StoreUnreadable

__all__ = ["Base", "base_of", "check_genesis"]

# Where the logical artifacts genesis lists that are neither in the manifest nor an index live in a vault.
_FIXED_FILES: dict[str, str] = {"layout": "layout.npz", "refs": "refs.npy"}


@dataclass(frozen=True)
class Base:
    """Where replay starts: the vault the ledger last committed and the ledger size it stands for."""

    name: str | None
    record: Mapping[str, Any] | None
    size: int  # batches with seq > size are replayed
    version: int
    digest: str
    seq: int  # the event that committed it (genesis or audit.verified)
    is_genesis: bool

    @property
    def files(self) -> Any:
        """The record's file digests (path in the vault -> hex SHA-256) as recorded; {} without a record."""
        return self.record.get("files", {}) if self.record is not None else {}


def base_of(events: Events) -> Base:
    if events.audits:
        a = events.audits[-1]
        return Base(_name(a.vault), a.vault, a.verified_size, a.model.version, a.model.digest, a.seq, False)
    vault = events.genesis.get("vault") if events.genesis else None
    model = events.genesis_model
    return Base(_name(vault), vault if isinstance(vault, Mapping) else None, 1,
                model.version if model else 0, model.digest if model else "", 1, True)


def _name(record: Any) -> str | None:
    name = record.get("name") if isinstance(record, Mapping) else None
    return name if isinstance(name, str) and name and "/" not in name and not name.startswith(".") else None


def check_genesis(root: Path, events: Events, base: Base) -> CheckResult:
    c = Findings("genesis")
    where = "genesis" if base.is_genesis else f"audit.verified (seq {base.seq})"
    if base.record is None or base.name is None:
        c.add(base.seq, f"{where} records no audit vault, so no replay can start (a ledger from before the vault)",
              "a vault record", "none")
        return c.done("")
    vault = root / "audit" / base.name
    if not vault.is_dir():
        c.add(base.seq, f"the vault {where} committed is missing", f"audit/{base.name}", "no such directory")
        return c.done("")
    files = base.record.get("files")
    if not isinstance(files, Mapping):
        c.add(base.seq, "the vault record has no file digests", "files", "none")
        return c.done("")
    _check_files(vault, files, base, where, c)
    count = _check_rows_and_parameters(vault, base, where, c)
    if base.is_genesis and events.genesis is not None:
        _check_engine_artifacts(vault, events.genesis.get("engine"), c)
    if events.genesis is not None:  # the encoder never changes, so genesis's digest holds for any vault
        check_encoder(root, vault, events.genesis.get("engine"), c)
    # The checkpoint origin: events.py refused a malformed one; a genesis without one uses the default.
    c.figures.update(vault=base.name, files=len(files), rows=count, checkpoint_origin=events.checkpoint_origin,
                     checkpoint_origin_committed=events.committed_origin is not None)
    return c.done(f"vault audit/{base.name}: {len(files)} files, {count} rows and the version-{base.version} "
                  f"parameters match {where}")


def _check_files(vault: Path, files: Mapping[str, Any], base: Base, where: str, c: Findings) -> None:
    """Every recorded file has its recorded digest, and the vault holds no file the record does not name."""
    for rel, want in sorted(files.items()):
        if not isinstance(rel, str) or rel.startswith("/") or ".." in rel.split("/"):
            c.add(base.seq, f"the vault record names a file outside the vault: {rel!r}", "a path inside it", rel)
            continue
        have = sha256_or_missing(vault / rel)
        if have != want:
            c.add(base.seq, f"vault file audit/{base.name}/{rel} differs from what {where} recorded", want, have)
    held = (store_reader.VAULT_ROWS, store_reader.VAULT_ERASED, "vault.json")  # the rows: checked by content
    extra = sorted(p.relative_to(vault).as_posix() for p in vault.rglob("*")
                   if p.is_file() and p.name not in held and p.relative_to(vault).as_posix() not in files)
    for rel in extra:
        c.add(base.seq, f"vault file audit/{base.name}/{rel} is not in the record {where} committed", "absent", "present")


def _check_rows_and_parameters(vault: Path, base: Base, where: str, c: Findings) -> int:
    """The rows' content digest and the parameters against the record; the vault's row count (0 if unreadable)."""
    assert base.record is not None
    try:
        digest, count = store_reader.vault_rows_digest(vault, base.record, vault.parent.parent / "rows.sqlite")
        if digest != base.record.get("rows_digest"):
            _rows_differ(vault, base, where, count, digest, c)
        version, model_digest, _ = store_reader.live_parameters(vault)
        if (version, model_digest) != (base.version, base.digest):
            c.add(base.seq, f"the vault's parameters are not the model {where} recorded",
                  f"version {base.version} {base.digest}", f"version {version} {model_digest}")
    except StoreUnreadable as exc:
        c.add(base.seq, str(exc))
        return 0
    return count


def _rows_differ(vault: Path, base: Base, where: str, count: int, digest: str, c: Findings) -> None:
    """The finding for a vault whose rows are not the ones committed: for a v2 vault, whose rows are the live
    ones plus the erased ones it keeps, the first row that differs (a live row edited, added or removed behind
    the ledger's back is one), from its per-row digests."""
    assert base.record is not None
    if store_reader.vault_keeps_erased(base.record):
        first = store_reader.first_row_difference(vault, base.record, vault.parent.parent / "rows.sqlite")
        if first is not None:
            what, want, have = first
            c.add(base.seq, f"training {what} the snapshot of the vault audit/{base.name} that {where} committed "
                            "(the live rows plus the erased rows the vault keeps)", want, have)
            return
    c.add(base.seq, f"the vault's training rows differ from what {where} recorded ({count} rows)",
          base.record.get("rows_digest"), digest)


def _check_engine_artifacts(vault: Path, engine: Any, c: Findings) -> None:
    """The initial checkpoints, increments, index, layout and refs against genesis.engine.artifacts."""
    artifacts = engine.get("artifacts") if isinstance(engine, Mapping) else None
    if not isinstance(artifacts, Mapping):
        c.add(1, "genesis records no artifact digests", "engine.artifacts", "none")
        return
    try:
        manifest_files = store_reader.read_json(vault / "CURRENT.json")["files"]
        if not isinstance(manifest_files, dict):
            raise TypeError("files is not an object")
    except (StoreUnreadable, KeyError, TypeError) as exc:
        c.add(1, f"the vault's manifest is unreadable: {exc}")
        return
    for logical, want in sorted(artifacts.items()):
        if logical == "encoder":
            continue  # check_encoder's, with its own finding
        if isinstance(manifest_files.get(logical), str):
            rel = f"artifacts/{manifest_files[logical]}"
        elif logical.endswith(".index"):
            rel = f"index/{logical[:-len('.index')]}.npz"
        else:
            rel = _FIXED_FILES.get(logical, str(logical))  # JSON keys: always a str
        have = sha256_or_missing(vault / rel)
        if have != want:
            c.add(1, f"{logical} ({rel}) differs from the digest genesis recorded", want, have)
