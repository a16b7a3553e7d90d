"""Check 4, data: the live store is what the audit derived, and no forgotten subject's row is in it.

Subject refs are HMACs under the deployment's key, so the key is needed to match live rows to the ledger's
forgotten subjects. The live rows must be the base vault's less the forgotten, unchanged, in a row store
SQLite's integrity check passes; the live parameters the head's; every other live file the vault's
(immutable ones) or the replay's (manifest and artifacts); the key that signs heads the one genesis
committed (the daemon refuses to start with another, so a replaced key is a store that no longer serves).
How many forgotten subjects' rows a vault still holds, pending the next seal, is a notice the auditor sees,
not a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgetd.client.audit import store_reader
from forgetd.client.audit.events import Events
from forgetd.client.audit.genesis import Base
from forgetd.client.audit.replay import NO_KEY, Replayed
from forgetd.client.audit.report import CheckResult, Findings, sha256_or_missing
from forgetd.client.errors import StoreUnreadable
from forgetd.ledger import LedgerError, subject_ref
from forgetd.ledger.signing import SigningKey

__all__ = ["check_data", "subject_key"]

_Row = tuple[Any, Any, Any]  # (ord, y, x) as stored: types are checked where they matter


def subject_key(root: Path, key_file: str | Path | None) -> bytes | None:
    """The deployment's subject key from `key_file`, else the store's keys/subject.key; None if there is none."""
    path = Path(key_file) if key_file is not None else root / "keys" / "subject.key"
    try:
        key = path.read_bytes()
    except OSError:
        return None
    return key or None


def check_data(root: Path, events: Events, key: bytes | None, base: Base, replayed: Replayed | None) -> CheckResult:
    c = Findings("data")
    live = events.live_model()
    _check_live_parameters(root, events, c)
    _check_store_files(root, base, replayed, c)
    _check_row_store_integrity(root / "rows.sqlite", c)
    _check_head_key(root / "keys" / "head_ed25519.key", events, c)
    if key is None:
        c.add(None, NO_KEY, "a key file", "none")
        return c.done("")
    forgotten = events.forgotten
    live_rows = _live_rows(root, forgotten, key, c)
    vault = root / "audit" / str(base.name)
    vault_rows = store_reader.vault_rows_file(vault, base.record)
    if base.name is not None and vault_rows.is_file():
        _check_row_store_integrity(vault_rows, c, what=f"the vault audit/{base.name}'s",
                                   immutable=not store_reader.vault_keeps_erased(base.record))
        requested = {ref for req in events.requests.values() if req.seq > base.size for ref in req.subjects}
        _check_rows_against_vault(vault, root / "rows.sqlite", live_rows, forgotten, key, base, c, requested)
    for name, held in _vault_holdings(root, forgotten, key):
        if name == base.name:
            c.notices.append(f"vault audit/{name} still holds {held} row(s) of forgotten subjects, pending the next "
                             "seal (forgetd verify --seal)")
        else:
            c.notices.append(f"vault audit/{name} is not the one the ledger committed last and holds {held} row(s) "
                             "of forgotten subjects; the next seal removes it")
    rows = len(live_rows)
    c.figures.update(rows=rows, forgotten=len(forgotten))
    head_version = live.version if live else 0
    return c.done(f"none of the {len(forgotten)} forgotten subjects has a row among the {rows} live rows, which are "
                  f"audit/{base.name}'s less the forgotten; live parameters are the head's (version {head_version})")


def _check_live_parameters(root: Path, events: Events, c: Findings) -> None:
    live = events.live_model()
    try:
        version, digest, shards = store_reader.live_parameters(root)
        if live is not None and (version, digest) != (live.version, live.digest):
            c.add(events.size, "the store's live parameters are not the model the ledger's head describes",
                  f"version {live.version} {live.digest}", f"version {version} {digest}")
            for k, (want, have) in enumerate(zip(live.shard_digests, shards)):
                if want != have:
                    c.add(events.size, f"shard {k}'s live parameters differ", want, have)
                    break
    except StoreUnreadable as exc:
        c.add(None, str(exc))


def _check_row_store_integrity(path: Path, c: Findings, *, what: str = "the live row store",
                               immutable: bool = False) -> None:
    if not path.is_file():
        return  # reading the rows names the missing file
    problems = store_reader.integrity_problems(path, immutable=immutable)
    if problems:
        c.add(None, f"{what} {path.name} fails SQLite's integrity check", "ok", "; ".join(problems))


def _check_head_key(path: Path, events: Events, c: Findings) -> None:
    """The store's head signing key is the one genesis committed."""
    want = events.head_public_key
    if want is None:
        return  # a genesis without a key is a chain finding already
    try:
        have = SigningKey.from_pem(path.read_bytes()).public_key
    except FileNotFoundError:
        c.add(None, f"the store has no head signing key ({path.name}); the daemon cannot sign heads",
              want.hex(), "missing")
        return
    except PermissionError:
        c.notices.append(f"{path} is not readable by this auditor: the head signing key was not compared with "
                         "the one genesis committed")
        return
    except (OSError, LedgerError) as exc:
        c.add(None, f"the store's head signing key ({path.name}) is unreadable: {exc}", want.hex(), "unreadable")
        return
    if have != want:
        c.add(None, f"the store's head signing key ({path.name}) is not the one genesis committed: heads it "
                    "signs do not verify, and forgetd serve refuses to start", want.hex(), have.hex())


def _live_rows(root: Path, forgotten: Mapping[str, int], key: bytes, c: Findings) -> dict[str, _Row]:
    """id -> (ord, y, x) of every live row; a forgotten subject's row found there is a finding."""
    live_rows: dict[str, _Row] = {}
    try:
        for ord_, sid, y, x in store_reader.iter_rows(root / "rows.sqlite"):
            if not isinstance(sid, str):
                c.add(None, f"live row ord {ord_} has a malformed id", "a string", type(sid).__name__)
                continue
            live_rows[sid] = (ord_, y, x)
            seq = forgotten.get(subject_ref(key, sid))
            if seq is not None:
                c.add(seq, f"the row of a subject forgotten at seq {seq} is in the live data store (row ord {ord_}, "
                           f"subject {subject_ref(key, sid)})", "no row", f"row ord {ord_}")
    except StoreUnreadable as exc:
        c.add(None, str(exc))
    return live_rows


def _check_store_files(root: Path, base: Base, replayed: Replayed | None, c: Findings) -> None:
    """Every file of the live store is what the audit derived: the immutable ones (layout, index, refs, test
    split, config) are the vault's; the manifest and every artifact it names (checkpoints, optimizer state,
    increments) are the replay's, byte for byte. Parameters alone would not do: a tampered optimizer state or
    increment shows only in a later forget, and a seal must never vouch for files the replay did not make."""
    for rel, want in sorted(base.files.items()):
        if rel.startswith("artifacts/") or rel in ("CURRENT.json", store_reader.VAULT_ROW_DIGESTS) \
                or ".." in rel.split("/") or rel.startswith("/"):  # the digests are the vault's own file
            continue
        have = sha256_or_missing(root / rel)
        if have != want:
            c.add(None, f"the live store's {rel} differs from the vault audit/{base.name}'s", want, have)
    if replayed is None or replayed.manifest is None or replayed.artifacts is None:
        c.notices.append("the live store's checkpoints, optimizer state and increments were not compared (no replay "
                         "result to compare them with)")
        return
    if not replayed.bitwise:
        c.notices.append("the live store's checkpoints, optimizer state and increments were not compared byte for "
                         "byte: some batches ran on another device type")
        return
    _check_replayed_files(root, replayed.manifest, replayed.artifacts, c)


def _check_replayed_files(root: Path, manifest: Mapping[str, Any], artifacts: Mapping[str, str], c: Findings) -> None:
    """The live manifest (less its tag) and every artifact file are the replayed store's."""
    try:
        live = dict(store_reader.read_json(root / "CURRENT.json"))
    except (StoreUnreadable, TypeError, ValueError) as exc:
        c.add(None, f"the live manifest is unreadable: {exc}")
        return
    live.pop("tag", None)
    for field_ in sorted(set(live) | set(manifest)):
        if live.get(field_) != manifest.get(field_):
            c.add(None, f"the live manifest's {field_!r} differs from the replayed store's",
                  json.dumps(manifest.get(field_))[:200], json.dumps(live.get(field_))[:200])
            return
    for name, want in sorted(artifacts.items()):
        have = store_reader.artifact_digest(root / "artifacts" / name)
        if have != want:
            c.add(None, f"the live store's artifacts/{name} differs from the replayed one", want, have)


def _check_rows_against_vault(vault_dir: Path, live_path: Path, live_rows: Mapping[str, _Row],
                              forgotten: Mapping[str, int], key: bytes, base: Base, c: Findings,
                              requested: set[str]) -> None:
    """The live rows must be the vault's rows less the forgotten ones, unchanged: a row edited or added behind
    the ledger's back would change what every later retrain learns. Also proves the key fits: the subjects
    requested since the vault was made must be among its rows (a wrong key matches none, and would make
    'no forgotten row found' vacuous)."""
    try:
        vault = [(ord_, sid, y, x, subject_ref(key, sid))
                 for ord_, sid, y, x in store_reader.iter_vault_rows(vault_dir, base.record, live_path)
                 if isinstance(sid, str)]
    except StoreUnreadable as exc:
        c.add(None, str(exc))
        return
    if requested and not any(row[4] in requested for row in vault):
        # Every other finding would follow from this one: name it alone.
        c.add(None, f"the subject key does not fit this store: none of the {len(requested)} subject(s) requested "
                    f"since audit/{base.name} was made is among its rows", "the deployment's key", "another key")
        return
    kept = 0
    for ord_, sid, y, x, ref in vault:
        if ref in forgotten:
            continue
        kept += 1
        have = live_rows.get(sid)
        if have is None:
            c.add(None, f"training row ord {ord_} (not forgotten) is missing from the live store",
                  f"row ord {ord_}", "none")
        elif have != (ord_, y, x):
            c.add(None, f"training row ord {ord_} (not forgotten) differs from the vault audit/{base.name}'s",
                  f"ord {ord_}, y {y}", f"ord {have[0]}, y {have[1]}" + ("" if have[2] == x else ", other features"))
    extra = len([sid for sid in live_rows if subject_ref(key, sid) not in forgotten]) - kept
    if extra > 0:
        c.add(None, f"the live store holds {extra} row(s) that are not in the vault audit/{base.name}",
              f"{kept} rows", f"{kept + extra} rows")


def _vault_holdings(root: Path, forgotten: Mapping[str, int], key: bytes) -> list[tuple[str, int]]:
    """(vault name, rows of forgotten subjects it holds) for every vault that holds any."""
    out: list[tuple[str, int]] = []
    audit_dir = root / "audit"
    if not audit_dir.is_dir():
        return out
    for vault in sorted(p for p in audit_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        held = 0
        # A v2 vault's own rows are the erased ones it keeps (the live ones are the live check's); a v1 vault
        # holds a copy of every row.
        erased = vault / store_reader.VAULT_ERASED
        try:
            for _o, sid, _y, _x in (store_reader.iter_kept_rows(erased) if erased.is_file()
                                    else store_reader.iter_rows(vault / store_reader.VAULT_ROWS, immutable=True)):
                if isinstance(sid, str) and subject_ref(key, sid) in forgotten:
                    held += 1
        except StoreUnreadable:
            continue
        if held or not vault.name:
            out.append((vault.name, held))
    return out
