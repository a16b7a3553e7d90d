"""The live dashboard at `GET /`: one HTML page, its script and style (static/, shipped in the package), and
`GET /dashboard.json`, the snapshot the script polls.

No build step and nothing fetched from elsewhere: the page draws its charts as SVG itself. The snapshot holds
the live model, the signed head, the SLA, the counters the throughput chart is drawn from (the page takes the
rate between two polls), and the last applied forgets as the ledger records them (strategy, guarantee,
engine time, the shards each retrained), so the history survives a restart.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from forgetd.server.api.http.bodies import HeadBody, error_responses, head_body
from forgetd.server.api.http.context import context_of
from forgetd.server.errors import ForgetdError
from forgetd.server.runtime import events
from forgetd.server.observe.metrics import RETRAINING

if TYPE_CHECKING:
    from forgetd.server.runtime.runtime import Runtime

__all__ = ["router", "Snapshot"]

router = APIRouter(tags=["Dashboard"])

RECENT_FORGETS = 30  # batches listed and charted
_SCAN = 4 * RECENT_FORGETS  # ledger entries read back to find them (each batch has a forget.requested or more)

# name -> (content, media type), read once: the package's static/ folder.
_STATIC = {name: (resources.files(__package__).joinpath("static", name).read_bytes(), media)
           for name, media in (("dashboard.html", "text/html; charset=utf-8"),
                               ("dashboard.js", "text/javascript; charset=utf-8"),
                               ("dashboard.css", "text/css; charset=utf-8"))}


class ModelView(BaseModel):
    version: int
    digest: str
    device: str
    shards: int
    forgotten_count: int
    ledger_seq: int = Field(description="The entry that published this version")
    threshold_m: int
    default_strategy: str


class ForgetView(BaseModel):
    """One applied batch, from its forget.applied entry."""

    seq: int
    recorded_at: str
    version: int
    requested: str = Field(description="The strategy the requests asked for")
    strategy: str = Field(description="What the batch resolved to")
    guarantee: str
    requests: int
    samples: int
    apply_ms: float
    queued_ms: float
    samples_read: int
    retrained_shards: list[int] = Field(description="Shards a sample of this batch was retrained in")
    recovered: bool


class SlaView(BaseModel):
    target_seconds: float | None
    window: int
    mean_seconds: float
    batches: int
    breached: bool


class Counters(BaseModel):
    inference_success: float
    inference_failure: float
    acknowledged: float
    applied: float
    queue_depth: float


class Snapshot(BaseModel):
    """What the dashboard shows, as of `time` (seconds since the epoch)."""

    time: float
    model: ModelView
    head: HeadBody
    sla: SlaView
    counters: Counters
    forgets: list[ForgetView] = Field(description="The last applied batches, oldest first")


@router.get("/", response_class=HTMLResponse, summary="The live dashboard (HTML)")
async def dashboard() -> Response:
    return _static("dashboard.html")


@router.get("/static/{name}", summary="The dashboard's script and style", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in _STATIC or name.endswith(".html"):
        return JSONResponse({"error": f"no dashboard file {name!r}; the page is at /"}, status_code=404)
    return _static(name)


@router.get("/dashboard.json", response_model=Snapshot, summary="The dashboard's data",
            responses=error_responses(503))
async def snapshot(request: Request) -> Snapshot:
    runtime = context_of(request).slot.get()
    return await run_in_threadpool(_snapshot, runtime)


def _static(name: str) -> Response:
    content, media = _STATIC[name]
    return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})


def _snapshot(runtime: Runtime) -> Snapshot:
    live, info, metrics = runtime.live, runtime.info, runtime.metrics
    head = runtime.ledger.head_with_proofs(None, []).head
    success, failure = metrics.inference_totals()
    sla = metrics.sla
    return Snapshot(
        time=time.time(),
        model=ModelView(version=live.version, digest=live.digest, device=info.device, shards=info.config.shards,
                        forgotten_count=live.forgotten_count, ledger_seq=live.ledger_seq,
                        threshold_m=info.threshold_m, default_strategy=info.config.default_strategy),
        head=head_body(head),
        sla=SlaView(target_seconds=sla.target_seconds, window=sla.window, mean_seconds=sla.mean_seconds,
                    batches=sla.batches, breached=sla.breached),
        counters=Counters(inference_success=success, inference_failure=failure,
                          acknowledged=metrics.value("forgetd_unlearning_requests_acknowledged_total"),
                          applied=metrics.value("forgetd_unlearning_requests_applied_total"),
                          queue_depth=metrics.value("forgetd_unlearning_queue_depth")),
        forgets=_recent_forgets(runtime, head.size),
    )  # fmt: skip


def _recent_forgets(runtime: Runtime, size: int) -> list[ForgetView]:
    out: list[ForgetView] = []
    for entry in runtime.ledger.read(max(1, size - _SCAN + 1), _SCAN):
        if entry.type != events.FORGET_APPLIED:
            continue
        try:
            b = events.parse_applied(entry.seq, entry.leaf_hash, entry.payload)
        except ForgetdError:  # the daemon folded this ledger at start, so this is only ever a newer schema
            continue
        out.append(ForgetView(
            seq=b.seq, recorded_at=entry.recorded_at, version=b.model.version, requested=b.strategy,
            strategy=b.resolved_strategy, guarantee=b.guarantee, requests=len(b.request_ids), samples=len(b.subjects),
            apply_ms=b.apply_micros / 1e3, queued_ms=b.queued_micros / 1e3, samples_read=b.samples_read,
            retrained_shards=sorted({s.shard for s in b.subjects if s.strategy in RETRAINING}), recovered=b.recovered,
        ))  # fmt: skip
    return out[-RECENT_FORGETS:]
