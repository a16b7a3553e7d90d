"""The unlearning API over HTTP: `POST /unlearn` answers 202 Accepted once the request is durable, and
`GET /unlearn/{request_id}` says where it stands (`?wait=true` waits for it to be applied).

    curl -si -X POST http://HOST:PORT/unlearn -H 'Authorization: Bearer T' -H 'Idempotency-Key: r1' \\
         -d '{"sample_ids": ["synthetic:7"], "method": "hs"}'          # 202, Location: /unlearn/r1
    curl -s 'http://HOST:PORT/unlearn/r1?wait=true&timeout=30'          # the result, once applied

The `Idempotency-Key` header is the request id (AIP-155): the same key with the same ids and method is the
same request, answered again and written once; with others, 409. Without the header the server assigns a
UUID4 (a retry then makes a new request). The answer is the receipt in the form `forgetd forget --json`
prints, so it can be kept and checked with `forgetd receipt verify`.

A translation onto the runtime, as the gRPC front is (server/api/forgets.py holds the checks they share).
Every check runs before the runtime is asked, and the runtime writes nothing on a refusal, so no error
answer (400, 401, 404, 409, 413, 503) leaves anything in the ledger.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from forgetd.server.api.forgets import check_sample_ids, receipt_proofs, request_id_or_new
from forgetd.server.api.http.bodies import HeadBody, ProofBody, error_responses, head_body, proof_body
from forgetd.server.api.http.context import context_of
from forgetd.server.errors import InvalidRequest
from forgetd.server.vocabulary import AUTO, STRATEGIES

if TYPE_CHECKING:
    from forgetd.server.runtime.runtime import RequestView, Runtime

__all__ = ["router", "UnlearnBody", "UnlearnAnswer"]

router = APIRouter(tags=["Unlearning"])

MAX_WAIT_SECONDS = 600.0
WAITERS = 64  # GET ?wait=true calls blocked at once; more queue for a thread, apart from inference's threads


class UnlearnBody(BaseModel):
    """What to forget: one sample or several, and how."""

    model_config = ConfigDict(extra="forbid")

    sample_id: str | None = Field(None, description="One sample to forget (give this or sample_ids)")
    sample_ids: list[str] | None = Field(None, description="Samples to forget in one request, each named once")
    method: str = Field(AUTO, description="The unlearning strategy; auto = the model's configured default",
                        json_schema_extra={"enum": list(STRATEGIES)})

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"{value!r} is not a method; use one of {', '.join(STRATEGIES)}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> UnlearnBody:
        if (self.sample_id is None) == (self.sample_ids is None):
            raise ValueError("give exactly one of sample_id (one id) and sample_ids (a list of ids)")
        return self

    def ids(self) -> list[str]:
        return [self.sample_id] if self.sample_id is not None else list(self.sample_ids or ())


class ShardCertificateBody(BaseModel):
    """What one shard's certified removal spent (docs/unlearning.md 14.3)."""

    shard: int
    step_bound: float = Field(description="The bound on the gradient residual this removal added")
    bound_spent: float = Field(description="The shard's accumulated bound beta since its last retrain")
    budget_left: float = Field(description="The budget sigma*epsilon/c less bound_spent; at 0 the shard retrains")
    epsilon_spent: float = Field(description="beta*c/sigma: the epsilon the shard's removals have used so far")
    removed: int = Field(description="Removals since the shard was last trained")
    retrained: bool = Field(description="The budget would have run out: the shard was retrained instead")
    hessian_rebuilt: bool = Field(description="The Hessian was formed afresh at the live parameters")


class CertificateBody(BaseModel):
    """A CERTIFIED batch's (epsilon, delta) certificate, as its forget.applied entry records it."""

    epsilon: float
    delta: float
    sigma: float = Field(description="The training objective's noise scale")
    budget: float = Field(description="sigma*epsilon/c, c = sqrt(2 ln(1.5/delta)): the bound each shard may spend")
    retrains: int = Field(description="Shards the batch retrained because their budget would have run out")
    shards: list[ShardCertificateBody] = Field(description="Each affected shard")


class ForgetResultBody(BaseModel):
    """The applied batch that carried the request."""

    model_version: int = Field(description="The version published without the samples")
    model_digest: str
    shard_digests: list[str]
    strategy: str = Field(description="The strategy the batch resolved to (never auto)")
    guarantee: str = Field(description="exact only if every sample's guarantee is exact, else approximate")
    residue_steps: int = Field(description="Retrain-region optimizer steps a subtraction could not remove")
    samples_read: int = Field(description="Training samples read retraining")
    apply_micros: int = Field(description="Engine time of the batch, microseconds")
    certificate: CertificateBody | None = Field(None, description="CERTIFIED batches only (the linear family): "
                                                "what the removal spent of the certified budget")


class SampleBody(BaseModel):
    """What happened to one requested sample; zeros and "unspecified" while pending."""

    sample_id: str = Field(description="As requested; empty when only its ref survives a restart")
    subject_ref: str = Field(description="HMAC of the id: the only form the ledger holds")
    shard: int
    slice: int = Field(description="1-based; 0 while pending")
    strategy: str = Field(description="What the sample got; while pending, the method asked for")
    guarantee: str = Field(description="exact, approximate, or unspecified while pending")
    applied_seq: int = Field(description="The forget.applied entry that removed it (maybe an earlier request's)")


class UnlearnAnswer(BaseModel):
    """A Forget request as it stands, with its receipt: the `forgetd forget --json` form."""

    request_id: str
    status: Literal["pending", "applied"]
    requested_seq: int = Field(description="The forget.requested entry: durable before this answer")
    requested_leaf_hash: str
    applied_seq: int = Field(description="The forget.applied entry; 0 while pending")
    applied_leaf_hash: str = Field(description="Empty while pending")
    head: HeadBody = Field(description="The signed head the proofs are against")
    requested_proof: ProofBody
    applied_proof: ProofBody | None = Field(description="None while pending")
    result: ForgetResultBody | None = Field(description="None while pending")
    samples: list[SampleBody] = Field(description="In request order")


_BODY = {"required": True, "content": {"application/json": {"schema": UnlearnBody.model_json_schema()}}}
_ACCEPTED = {"model": UnlearnAnswer, "description": "Durable and acknowledged; poll Location for the result",
             "headers": {"Location": {"description": "/unlearn/{request_id}", "schema": {"type": "string"}},
                         "Retry-After": {"description": "Seconds to wait before polling",
                                         "schema": {"type": "integer"}}}}


@router.post("/unlearn", status_code=202, response_model=UnlearnAnswer, summary="Forget samples",
             openapi_extra={"requestBody": _BODY},
             responses={202: _ACCEPTED, 200: {"model": UnlearnAnswer, "description": "A repeat of a request "
                                                  "already applied: its result"},
                        **error_responses(400, 401, 404, 409, 413, 503)})
async def unlearn(
    request: Request,
    idempotency_key: str | None = Header(None, description="The request id (AIP-155): a retry with the same key "
                                         "is the same request. Default: a new UUID4"),
) -> Response:
    context = context_of(request)
    context.require_token(request)  # before the body is read: a caller without the token learns nothing
    ask = _parse(await context.read_body(request))
    runtime = context.slot.get()
    ids = ask.ids()
    check_sample_ids(ids, runtime.config.max_forget_ids, "sample_id" if ask.sample_id is not None else "sample_ids")
    request_id = request_id_or_new(idempotency_key or "", "Idempotency-Key")
    # Durable before it returns (an fsync): off the event loop, with the answer's proofs and JSON, in one hop.
    answer = await run_in_threadpool(_submit, runtime, ids, ask.method, request_id)
    return _reply(runtime, answer, 200 if answer.status == "applied" else 202)


@router.get("/unlearn/{request_id:path}", response_model=UnlearnAnswer, summary="Where a Forget request stands",
            responses=error_responses(400, 404, 503))
async def unlearn_status(
    request: Request,
    request_id: str,
    wait: bool = Query(False, description="Wait until the request is applied (at most `timeout` seconds)"),
    timeout: float = Query(30.0, gt=0, le=MAX_WAIT_SECONDS, description="Seconds to wait with wait=true; the "
                           "answer then says where the request stands, applied or not"),
) -> Response:
    context = context_of(request)
    context.require_read(request)
    runtime, reveal = context.slot.get(), context.holds_token(request)  # raw ids only to the token holder
    if wait:
        answer = await anyio.to_thread.run_sync(_wait, runtime, request_id, timeout, reveal, limiter=_waiters(request))
    else:
        answer = await run_in_threadpool(lambda: _answer(runtime, runtime.request(request_id, reveal_ids=reveal)))
    return _reply(runtime, answer, 200)


def _parse(body: bytes) -> UnlearnBody:
    try:
        return UnlearnBody.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{where}: {message}" if where else f"the body: {message}") from None


def _submit(runtime: Runtime, ids: list[str], method: str, request_id: str) -> _Answer:
    return _answer(runtime, runtime.submit(ids, method, request_id))


def _wait(runtime: Runtime, request_id: str, timeout: float, reveal: bool) -> _Answer:
    deadline = time.monotonic() + timeout
    runtime.request(request_id)  # RequestNotFound (404) before waiting on nothing
    view = runtime.wait_applied(request_id, lambda: deadline - time.monotonic(), lambda: time.monotonic() < deadline,
                                reveal_ids=reveal)
    return _answer(runtime, view)


def _waiters(request: Request) -> anyio.CapacityLimiter:
    # One limiter per application, made on its event loop the first time a caller waits.
    state = request.app.state
    if not hasattr(state, "unlearn_waiters"):
        state.unlearn_waiters = anyio.CapacityLimiter(WAITERS)
    limiter: anyio.CapacityLimiter = state.unlearn_waiters
    return limiter


@dataclass(frozen=True)
class _Answer:
    request_id: str
    status: str
    json: bytes  # the UnlearnAnswer, serialised on the worker thread that built it


def _reply(runtime: Runtime, answer: _Answer, status: int) -> Response:
    reply = Response(answer.json, status_code=status, media_type="application/json")
    reply.headers["Location"] = f"/unlearn/{quote(answer.request_id, safe='')}"
    if answer.status == "pending":
        # The recent mean time to apply (the SLA's figure) is the best guess of when to look again.
        reply.headers["Retry-After"] = str(max(1, math.ceil(runtime.metrics.sla.mean_seconds)))
    return reply


def _answer(runtime: Runtime, view: RequestView) -> _Answer:
    """The request as it stands, with a receipt against the current signed head (as the gRPC front's), as JSON.

    Serialised here, on the thread that made it: the worker starts applying the moment a request is durable
    and holds the GIL in bursts, so the less the event loop has left to do once it resumes, the sooner the
    answer is on the wire (FastAPI would otherwise validate and serialise it again on the loop)."""
    req, batch = view.requested, view.applied
    proofs = receipt_proofs(runtime, view)
    result = None
    if batch is not None:
        result = ForgetResultBody(model_version=batch.model.version, model_digest=batch.model.digest,
                                  shard_digests=list(batch.model.shard_digests), strategy=batch.resolved_strategy,
                                  guarantee=batch.guarantee, residue_steps=batch.residue_steps,
                                  samples_read=batch.samples_read, apply_micros=batch.apply_micros,
                                  certificate=_certificate(runtime, batch.seq))
    samples = []
    for sample_id, ref, forgotten in view.samples:
        if forgotten is None:  # pending: what was asked, nothing known yet
            samples.append(SampleBody(sample_id=sample_id, subject_ref=ref, shard=0, slice=0, strategy=req.strategy,
                                      guarantee="unspecified", applied_seq=0))
        else:
            by, got = forgotten
            samples.append(SampleBody(sample_id=sample_id, subject_ref=ref, shard=got.shard, slice=got.slice,
                                      strategy=got.strategy, guarantee=got.guarantee, applied_seq=by.seq))
    answer = UnlearnAnswer(
        request_id=req.request_id, status="applied" if batch is not None else "pending",
        requested_seq=req.seq, requested_leaf_hash=req.leaf_hash.hex(),
        applied_seq=batch.seq if batch is not None else 0,
        applied_leaf_hash=batch.leaf_hash.hex() if batch is not None else "",
        head=head_body(proofs.head), requested_proof=proof_body(proofs.inclusions[0]),
        applied_proof=proof_body(proofs.inclusions[1]) if batch is not None else None,
        result=result, samples=samples,
    )  # fmt: skip
    return _Answer(answer.request_id, answer.status, answer.model_dump_json().encode())


def _certificate(runtime: Runtime, applied_seq: int) -> CertificateBody | None:
    """The batch's `certified` field from its forget.applied entry (the fold does not keep it: one row read), or
    None when it has none (another strategy, or a batch recorded from the store's tag at restart)."""
    cert = next(iter(runtime.ledger.read(applied_seq, 1))).payload.get("certified")
    if not isinstance(cert, dict):
        return None
    shards = [ShardCertificateBody(
        shard=sh["shard"], step_bound=float(sh["step_bound"]), bound_spent=float(sh["bound"]),
        budget_left=float(sh["budget_left"]), epsilon_spent=float(sh["epsilon_spent"]), removed=sh["removed"],
        retrained=sh["retrained"], hessian_rebuilt=sh["rebuilt"]) for sh in cert["shards"]]
    return CertificateBody(epsilon=float(cert["epsilon"]), delta=float(cert["delta"]), sigma=float(cert["sigma"]),
                           budget=float(cert["budget"]), retrains=sum(sh.retrained for sh in shards), shards=shards)
