"""What every front checks in a Forget request, and what it asks of the ledger to answer one: the rules once,
wire-independent. The gRPC front (convert.py) and the HTTP front (http/unlearn.py) call these, each naming
the fields in its own wire's terms; what the runtime itself refuses (unknown ids, a reused request id) it
refuses for all of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from forgetd.server.errors import InvalidRequest, shown_id
from forgetd.server.runtime.admission import MAX_REQUEST_ID_CHARS, MAX_SAMPLE_ID_CHARS  # the runtime's own limits

if TYPE_CHECKING:
    from forgetd.server.runtime.ledger_writer import HeadWithProofs
    from forgetd.server.runtime.runtime import RequestView, Runtime

__all__ = ["MAX_REQUEST_ID_CHARS", "MAX_SAMPLE_ID_CHARS", "check_sample_ids", "request_id_or_new", "receipt_proofs"]



def check_sample_ids(ids: Sequence[str], max_ids: int, field: str = "sample_ids") -> None:
    """InvalidRequest, saying how to fix it, unless `ids` is a non-empty list of distinct, sized ids."""
    if not ids:
        raise InvalidRequest(f"{field} is empty: name at least one sample to forget")
    if len(ids) > max_ids:
        raise InvalidRequest(f"{field} has {len(ids)} ids, above this server's limit of {max_ids}; split the request")
    bad = next((i for i in ids if not i or len(i) > MAX_SAMPLE_ID_CHARS), None)
    if bad is not None:
        raise InvalidRequest(f"sample id {shown_id(bad)} is empty or longer than {MAX_SAMPLE_ID_CHARS} characters")
    dup = _first_repeat(ids)
    if dup is not None:
        raise InvalidRequest(f"sample id {shown_id(dup)} appears more than once; name each sample once")


def request_id_or_new(given: str, field: str = "request_id") -> str:
    """The caller's request id (AIP-155), checked, or a new UUID4 when it gave none."""
    request_id = given or str(uuid.uuid4())
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        raise InvalidRequest(f"{field} must be at most {MAX_REQUEST_ID_CHARS} printable characters "
                             "(a UUID4 is recommended)")
    return request_id


def receipt_proofs(runtime: Runtime, view: RequestView) -> HeadWithProofs:
    """The signed current head with inclusion proofs of the request's entries: its forget.requested, then its
    forget.applied once applied. Both are made against that one head, so the receipt is sound on its own."""
    seqs = [view.requested.seq] + ([view.applied.seq] if view.applied is not None else [])
    return runtime.ledger.receipt_proofs(seqs)  # the witness quorum's cosigned head when it holds them, else now's


def _first_repeat(ids: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None
