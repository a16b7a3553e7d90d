"""Check 6, gold (`forgetd verify --gold`): the live model beside one retrained from scratch on the live rows
with the store's own configuration, compared on the test split.

Replay proves the model is what the ledger's strategies compute; this shows what those strategies leave
behind compared with never having trained on the forgotten rows: test accuracy and loss of both, the share of
rows they label alike, the largest probability difference and the parameter distance. Within the tolerance
(`--gold-epsilon`, test-accuracy points either way) it passes. The figures go into an `audit.gold` ledger entry
either way (forgetd.client.audit.newton_events reads it back), so the ledger keeps what each check found.

The retrain is the server's code (forgetd.server.replay.gold_standard: the server extra, torch) and costs
what a RETRAIN of the store costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetd.client.audit.events import Events
from forgetd.client.audit.newton_events import AUDIT_GOLD
from forgetd.client.audit.replay import SERVER_EXTRA
from forgetd.client.audit.report import CheckResult, Findings
from forgetd.ledger import Ledger, LedgerError

__all__ = ["DEFAULT_GOLD_EPSILON", "check_gold"]

DEFAULT_GOLD_EPSILON = 0.5  # test-accuracy points


def check_gold(root: Path, events: Events, tolerance_points: float = DEFAULT_GOLD_EPSILON,
               device: str | None = None) -> CheckResult:
    """The gold check's result; records its figures as an audit.gold entry in the store's ledger."""
    c = Findings("gold")
    try:
        from forgetd.server import replay as server_replay
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "numpy"):
            c.add(None, SERVER_EXTRA)
            return c.done("")
        raise
    try:
        figures = server_replay.gold_standard(root, tolerance_points, device or "cpu")
    except server_replay.ForgetdError as exc:
        c.add(None, f"the store does not open for the gold standard: {exc}")
        return c.done("")
    payload: dict[str, Any] = {**figures.to_payload(), "by": "verify"}
    c.figures.update({k: v for k, v in payload.items() if k != "model"})
    live = events.live_model()
    if live is not None and (figures.version, figures.digest) != (live.version, live.digest):
        c.notices.append(f"the store was at version {figures.version} when checked; the ledger's head says "
                         f"{live.version} (a daemon applied a forget meanwhile, or the store differs: see data)")
    if not figures.passed:
        c.add(None, f"the live model is {figures.gap_points:+.2f} test-accuracy points from one retrained from "
                    f"scratch, beyond the tolerance of {tolerance_points:g}: {figures.summary()}",
              f"within {tolerance_points:g} points", f"{figures.gap_points:+.2f} points")
    seq = _record(root, payload, c)
    where = f"; recorded as audit.gold at seq {seq}" if seq is not None else ""
    return c.done(f"{figures.summary()}{where}")


def _record(root: Path, payload: dict[str, Any], c: Findings) -> int | None:
    try:
        with Ledger(root / "ledger.sqlite") as ledger:
            entry = ledger.append(AUDIT_GOLD, payload, event_id=f"{AUDIT_GOLD}:{ledger.head().size + 1}")
    except LedgerError as exc:
        c.notices.append(f"the figures were not recorded in the ledger: {exc}")
        return None
    c.figures["ledger_seq"] = entry.seq
    return entry.seq
