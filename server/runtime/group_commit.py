"""The daemon's group committer: the ledger's (forgetd.ledger.group_commit), answering a closing ledger as a
server that is not serving.

The ledger raises LedgerClosing for an append that reaches a committer after `close`; a client of the daemon
hears the same as for every other shutdown refusal (NotServing: UNAVAILABLE over gRPC, 503 over HTTP), so
the retry advice does not depend on which thread noticed the shutdown first.
"""

from __future__ import annotations

from typing import TypeVar

from forgetd.ledger import Entry, LedgerClosing
from forgetd.ledger.group_commit import Event
from forgetd.ledger.group_commit import GroupCommitter as LedgerGroupCommitter

from forgetd.server.errors import NotServing

__all__ = ["GroupCommitter"]

T = TypeVar("T")


class GroupCommitter(LedgerGroupCommitter[T]):
    """The ledger's group committer, with LedgerClosing answered as NotServing (same message)."""

    def append(self, event: Event, tag: T) -> Entry:
        try:
            return super().append(event, tag)
        except LedgerClosing as exc:
            raise NotServing(str(exc)) from None
