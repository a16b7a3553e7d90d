"""What an audit answers: one CheckResult per check, gathered in an AuditReport, and the collector a check
fills while it runs. Every check module builds its result with `Findings`; none formats a report itself."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetd.client.audit import store_reader
from forgetd.client.errors import StoreUnreadable
from forgetd.ledger import Head, Problem

__all__ = ["AuditReport", "CheckResult", "Findings", "FAILED", "MAX_LISTED", "PASSED", "SKIPPED", "sha256_or_missing",
           "skipped"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
MAX_LISTED = 50  # problems listed per check; the rest are counted


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # passed | failed | skipped
    summary: str
    problems: tuple[Problem, ...] = ()
    notices: tuple[str, ...] = ()  # what the auditor must see without it being a failure (pending work)
    seconds: float = 0.0
    figures: Mapping[str, Any] = field(default_factory=dict)
    problems_omitted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "problems": [p.to_dict() for p in self.problems], "problems_omitted": self.problems_omitted,
                "notices": list(self.notices), "seconds": round(self.seconds, 6), "figures": dict(self.figures)}


@dataclass(frozen=True)
class AuditReport:
    store: str
    head: Head | None
    checks: tuple[CheckResult, ...]
    sealed: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status != FAILED for c in self.checks) and self.checks[0].status == PASSED

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def text(self) -> str:
        lines = [f"forgetd verify {self.store}"]
        for c in self.checks:
            lines.append(f"  {c.name:<8} {c.status.upper() if c.status == FAILED else c.status:<8} {c.summary}")
            for p in c.problems[:5]:
                lines.append(f"           - {p}")
            more = len(c.problems) - 5 + c.problems_omitted
            if more > 0:
                lines.append(f"           ... and {more} more")
            for n in c.notices:
                lines.append(f"           notice: {n}")
        if self.sealed:
            lines.append(f"sealed: audit.verified at seq {self.sealed['seq']}; replays now start from vault "
                         f"audit/{self.sealed['vault']}" + (f"; removed {', '.join(self.sealed['removed'])}"
                                                            if self.sealed["removed"] else ""))
        failed = [c.name for c in self.checks if c.status == FAILED]
        lines.append("verified: every check passed" if self.ok else f"NOT verified: {', '.join(failed)} failed")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "head": self.head.to_dict() if self.head else None,
                "head_hex": self.head.to_hex() if self.head else None,
                "checks": [c.to_dict() for c in self.checks], "sealed": dict(self.sealed) if self.sealed else None}


class Findings:
    """Collects one check's findings; `done()` makes the frozen result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.problems: list[Problem] = []
        self.notices: list[str] = []
        self.figures: dict[str, Any] = {}

    def add(self, seq: int | None, what: str, expected: object = None, actual: object = None) -> None:
        self.problems.append(Problem(seq, what, expected, actual))

    def done(self, summary: str, failed_summary: str | None = None) -> CheckResult:
        failed = bool(self.problems)
        listed = tuple(self.problems[:MAX_LISTED])
        return CheckResult(self.name, FAILED if failed else PASSED,
                           (failed_summary or f"{len(self.problems)} problem(s); first: {self.problems[0]}")
                           if failed else summary,
                           listed, tuple(self.notices), time.perf_counter() - self.started, self.figures,
                           len(self.problems) - len(listed))


def skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, SKIPPED, why)


def sha256_or_missing(path: Path) -> str:
    """The file's hex SHA-256, or "missing": an unreadable file is a finding to report, never a crash."""
    try:
        return store_reader.sha256_file(path)
    except StoreUnreadable:
        return "missing"
