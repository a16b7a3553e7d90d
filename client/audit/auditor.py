"""The auditor: `audit(store)` proves, from the store and its ledger alone, what the model is and what it forgot.

    report = audit("store/", receipt=load_receipt("r.json"), server="127.0.0.1:50051")
    print(report.text()); sys.exit(0 if report.ok else 1)

Checks, in order, each in its module of the same name; each passes or fails, and a failure names its first
offending item (seq, expected, actual):

1. chain    verify_ledger (every hash, canonical bytes, gapless seq, triggers, integrity); consistency with an
            expected head or a receipt's head; the receipt head's Ed25519 signature under the key genesis
            recorded; every event follows the schema and from the events before it.
2. genesis  the vault replay starts from (audit/genesis, or the one the latest audit.verified sealed) matches
            the digests the ledger committed for it: every file, the rows' content digest, its parameters;
            for the genesis vault also the initial checkpoints and increments genesis.engine.artifacts lists.
3. replay   on a scratch copy of the vault, every later forget.applied is re-executed with its recorded
            strategy, comparing per-shard digests after each (forgetd.server.replay: needs the server extra).
            Requests without their forget.applied are named as pending.
4. data     no forgotten subject has a row in the live store (subject refs under the deployment key); the
            live parameters are the head's. Separately, how many forgotten subjects' rows a vault still holds,
            pending the next seal: a notice the auditor sees, not a failure.
5. live     (with a server) the serving model's version and digests are the head's; its signed head verifies
            under genesis's key and extends the store's ledger.

`gold=True` adds check 6, gold: the live model beside one retrained from scratch on its live rows, within
`gold_epsilon` test-accuracy points, its figures recorded as an audit.gold entry (forgetd.client.audit.gold).

`seal=True`, once every check passed, snapshots the verified state as a new vault, appends `audit.verified`
(see forgetd.client.audit.events) and deletes the older vault, so the rows it held are gone and later audits
replay from the new snapshot (forgetd.client.audit.seal).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetd.client.audit.chain import check_chain
from forgetd.client.audit.data import check_data, subject_key
from forgetd.client.audit.genesis import base_of, check_genesis
from forgetd.client.audit.gold import DEFAULT_GOLD_EPSILON, check_gold
from forgetd.client.audit.replay import Replayed, check_replay
from forgetd.client.audit.report import PASSED, AuditReport, CheckResult, skipped
from forgetd.client.audit.seal import seal as seal_vault
from forgetd.client.types import Receipt
from forgetd.ledger import Head

if TYPE_CHECKING:
    from forgetd.client.client import Client

__all__ = ["audit"]

_AFTER_CHAIN = ("genesis", "replay", "data", "live")


def audit(
    store: str | Path,
    *,
    expect_head: Head | str | None = None,
    receipt: Receipt | None = None,
    server: str | Client | None = None,
    chain_only: bool = False,
    key_file: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    seal: bool = False,
    gold: bool = False,
    gold_epsilon: float = DEFAULT_GOLD_EPSILON,
) -> AuditReport:
    """Run the checks on the store at `store` (see the module docstring) and return the report.

    Every finding is in the report. Raised, as ForgetdClientErrors: StoreSealError when a seal was refused,
    NoSpace when the replay's scratch copy did not fit on the store's file system (it is removed again)."""
    root = Path(store)
    if isinstance(expect_head, str):
        expect_head = Head.from_hex(expect_head)
    chain, head, events = check_chain(root, expect_head, receipt)
    if chain_only:
        return AuditReport(str(root), head, (chain, *(skipped(n, "not run (--chain-only)") for n in _AFTER_CHAIN)))
    if chain.status != PASSED or events is None or head is None:
        why = "not run: the chain did not verify, so its events cannot be trusted"
        return AuditReport(str(root), head, (chain, *(skipped(n, why) for n in _AFTER_CHAIN)))
    key = subject_key(root, key_file)
    base = base_of(events)
    checks: list[CheckResult] = [chain, check_genesis(root, events, base)]
    replayed: Replayed | None = None
    if checks[-1].status != PASSED:
        checks.append(skipped("replay", "not run: the vault does not match what the ledger committed"))
    else:
        replay_check, replayed = check_replay(root, events, base, key, device, progress)
        checks.append(replay_check)
    checks.append(check_data(root, events, key, base, replayed))
    if server is None:
        checks.append(skipped("live", "not run (no --server)"))
    else:
        from forgetd.client.audit.live import check_live  # grpc, only when a server is asked

        checks.append(check_live(server, events, head, root))
    if gold:
        checks.append(check_gold(root, events, gold_epsilon, device))
    report = AuditReport(str(root), head, tuple(checks))
    if not seal or not report.ok or replayed is None:
        return report
    return AuditReport(str(root), head, tuple(checks), seal_vault(root, events, head, base, replayed))
