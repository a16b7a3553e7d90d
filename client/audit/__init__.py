"""The auditor behind `forgetd verify`: it replays the ledger from genesis and proves the store's state.

    from forgetd.client.audit import audit

    report = audit("store/", server="127.0.0.1:50051")
    print(report.text())

`audit` (forgetd.client.audit.auditor) runs the checks in order; each lives in its own module: chain,
genesis, replay, data, live, and seal for `--seal`. The auditor reads the ledger's events with its own code
(events) and the store with its own reader (store_reader), so it shares no bug with the daemon that wrote them.
"""

from forgetd.client.audit.auditor import audit
from forgetd.client.audit.report import FAILED, PASSED, SKIPPED, AuditReport, CheckResult
from forgetd.client.errors import NoSpace, StoreSealError, StoreUnreadable

__all__ = ["FAILED", "PASSED", "SKIPPED", "AuditReport", "CheckResult", "NoSpace", "StoreSealError", "StoreUnreadable",
           "audit"]
