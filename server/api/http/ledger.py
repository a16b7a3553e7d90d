"""The ledger over HTTP, for auditors with curl: the signed head (with proofs on request) and the entries as
JSON lines. Reads are open to anyone, as on gRPC; every byte string is lower-case hex.

    curl -s http://HOST:PORT/ledger/head | jq -r .hex            # the head, as forgetd verify --expect-head takes it
    curl -s 'http://HOST:PORT/ledger/entries?from=1&limit=100'   # one JSON object per line (application/x-ndjson)

An entry's `envelope` is its canonical bytes as text (RFC 8785 JSON, UTF-8): the leaf hash is
SHA-256(0x00 || those bytes), so an auditor recomputes the chain and the Merkle root from this stream alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from forgetd.ledger import Entry

from forgetd.server.api.http.bodies import HeadBody, ProofBody, error_responses, head_body, proof_body
from forgetd.server.api.http.context import context_of
from forgetd.server.runtime.ledger_writer import READ_PAGE

__all__ = ["router"]

router = APIRouter(tags=["Ledger"])


class ConsistencyBody(BaseModel):
    """An RFC 9162 consistency proof: the tree of `old_size` entries is a prefix of the one of `new_size`."""

    old_size: int
    new_size: int
    hashes: list[str] = Field(description="32-byte hashes in hex")


class HeadAnswer(HeadBody):
    """The head, and the proofs asked for, all against this head."""

    inclusions: list[ProofBody] = Field(default_factory=list, description="One per `inclusion` query parameter")
    consistency: ConsistencyBody | None = Field(None, description="When `consistency_from` was given")


@router.get("/ledger/head", response_model=HeadAnswer, summary="The signed ledger head, with proofs on request",
            responses=error_responses(400, 401, 503))
async def ledger_head(
    request: Request,
    consistency_from: int | None = Query(None, ge=1, description="Also prove that the head of this size, seen "
                                         "earlier, is a prefix of this one"),
    inclusion: list[int] = Query([], description="Also prove these entries (by seq) are in this head; repeatable"),
) -> HeadAnswer:
    context_of(request).require_read(request)  # open unless --ledger-reads token, as on gRPC
    runtime = context_of(request).slot.get()
    proofs = await run_in_threadpool(runtime.ledger.head_with_proofs, consistency_from, inclusion)
    consistency = None
    if proofs.consistency is not None:
        c = proofs.consistency
        consistency = ConsistencyBody(old_size=c.old_size, new_size=c.new_size, hashes=[h.hex() for h in c.hashes])
    return HeadAnswer(**head_body(proofs.head).model_dump(), inclusions=[proof_body(p) for p in proofs.inclusions],
                      consistency=consistency)


class LedgerEntry(BaseModel):
    """One line of /ledger/entries."""

    seq: int
    event_id: str
    type: str = Field(description="genesis, forget.requested, forget.applied, audit.verified, ...")
    schema_version: int
    recorded_at: str = Field(description="RFC 3339, UTC")
    envelope: str = Field(description="The canonical envelope (RFC 8785 JSON) whose UTF-8 bytes the leaf hash covers")
    leaf_hash: str = Field(description="SHA-256(0x00 || envelope), hex")
    chain_hash: str = Field(description="SHA-256(0x02 || seq as 8 bytes || previous chain hash || leaf hash), hex")


# The stream's media type, each line described by LedgerEntry's schema.
_NDJSON = {"application/x-ndjson": {"schema": LedgerEntry.model_json_schema()}}


@router.get("/ledger/entries", response_class=StreamingResponse, summary="Ledger entries as JSON lines",
            responses={200: {"content": _NDJSON, "description": "LedgerEntry objects, one per line, in seq order"},
                       **error_responses(400, 401, 503)})
async def ledger_entries(
    request: Request,
    start: int = Query(1, alias="from", ge=1, description="The first seq to send"),
    limit: int | None = Query(None, ge=1, description="At most this many entries; default: up to the head"),
) -> StreamingResponse:
    context_of(request).require_read(request)  # open unless --ledger-reads token, as on gRPC
    runtime = context_of(request).slot.get()
    # The head is taken when the stream starts; entries appended meanwhile come with the next request.
    return StreamingResponse(_lines(runtime.ledger.read(start, limit)), media_type="application/x-ndjson")


def _lines(entries: Iterable[Entry]) -> Iterator[bytes]:
    # Starlette runs a plain iterator on a worker thread, one hop per item: send pages, not single lines.
    page: list[bytes] = []
    for entry in entries:
        page.append(_entry(entry).model_dump_json().encode() + b"\n")
        if len(page) >= READ_PAGE:
            yield b"".join(page)
            page = []
    if page:
        yield b"".join(page)


def _entry(entry: Entry) -> LedgerEntry:
    return LedgerEntry(seq=entry.seq, event_id=entry.event_id, type=entry.type, schema_version=entry.v,
                       recorded_at=entry.recorded_at, envelope=entry.envelope.decode(), leaf_hash=entry.leaf_hash.hex(),
                       chain_hash=entry.chain_hash.hex())

