"""`GET /metrics`: the daemon's Prometheus metrics in the text exposition format (server/observe/metrics.py
defines them). Open to anyone, as every read is; 503 while the daemon loads or shuts down, which Prometheus
records as the target being down.

    scrape_configs:
      - job_name: forgetd
        static_configs: [{targets: ["HOST:PORT"]}]      # the --http-listen address
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from forgetd.server.api.http.bodies import error_responses
from forgetd.server.api.http.context import context_of

__all__ = ["router"]

_TEXT = "text/plain; version=0.0.4; charset=utf-8"  # or OpenMetrics, when the scraper's Accept asks for it

router = APIRouter(tags=["Metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {_TEXT: {"schema": {"type": "string"}}},
                             "description": "The Prometheus text exposition format"}, **error_responses(503)})
async def metrics(request: Request) -> Response:
    runtime = context_of(request).slot.get()
    # Formatting a few dozen series takes well under a millisecond: done here, not on a worker thread.
    content, content_type = runtime.metrics.exposition(request.headers.get("accept"))
    return Response(content, media_type=content_type)
