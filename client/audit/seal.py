"""The seal (`forgetd verify --seal`, only after every check passed): the verified state becomes the new vault.

It snapshots the store as audit/head<size>, checks the snapshot is the model the audit verified (a daemon may
have applied a forget meanwhile), appends `audit.verified` committing the snapshot's record (see
forgetd.client.audit.events), then deletes every older vault, so the forgotten rows they held are gone and
later audits replay from the new snapshot. The snapshot itself is the server's code (forgetd.server.replay).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetd.client.audit import store_reader
from forgetd.client.audit.events import AUDIT_VERIFIED, Events
from forgetd.client.audit.genesis import Base
from forgetd.client.audit.replay import Replayed
from forgetd.client.errors import StoreSealError
from forgetd.ledger import Head, Ledger, LedgerError

__all__ = ["seal"]


def seal(root: Path, events: Events, head: Head, base: Base, replayed: Replayed) -> dict[str, Any]:
    """Snapshot, commit and clean up; what was sealed ({"seq", "vault", "removed"}). StoreSealError if refused."""
    from forgetd.server import replay as server_replay

    live = events.live_model()
    assert live is not None
    name = f"head{head.size}"
    try:
        record = server_replay.snapshot_vault(root, name)
    except server_replay.ForgetdError as exc:
        raise StoreSealError(f"cannot snapshot the verified state: {exc}") from exc
    version, digest, _ = store_reader.live_parameters(root / "audit" / name)
    if (version, digest) != (live.version, live.digest):
        server_replay.remove_vault(root, name)
        raise StoreSealError(f"the store moved on while it was audited (it is at version {version}, the audit "
                             f"verified version {live.version}); run forgetd verify --seal again")
    payload = {
        "verified": head.to_dict(),
        "model": live.to_dict(),
        "vault": record,
        "replayed": replayed.batches,
        "replay_device": replayed.device,
        "bitwise": replayed.bitwise,
        "previous_vault": base.name or "",
    }
    try:
        with Ledger(root / "ledger.sqlite") as ledger:
            entry = ledger.append(AUDIT_VERIFIED, payload, event_id=f"{AUDIT_VERIFIED}:{head.size}")
    except LedgerError as exc:
        raise StoreSealError(str(exc)) from exc
    removed = [n for n in server_replay.vault_names(root) if n != name]
    for old in removed:
        server_replay.remove_vault(root, old)
    return {"seq": entry.seq, "vault": name, "removed": removed}
