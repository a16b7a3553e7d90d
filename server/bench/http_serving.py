"""What the HTTP front costs, each figure beside its gRPC baseline in the same run (`forgetd bench serving`
measures these after its own figures, on the same daemon):

1. Acknowledging a Forget: POST /unlearn until its 202 against gRPC Forget with wait=false, one new sample
   and the same strategy each, alternating in blocks so machine noise hits both alike (target: HTTP p50 at
   most 1.5x gRPC's).
2. What a Prometheus scrape costs Predict: 1-row gRPC Predicts from a client process, in alternating blocks
   with a scraper process pulling /metrics every 100 ms and without it (target: p50 at most 3% slower).

Clients and scraper run in processes of their own for Predict, as real ones do; the acks are timed from this
process for both protocols alike, as serving.py times its own.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.api.convert import STRATEGY_TO_PROTO
from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import DPUS

if TYPE_CHECKING:
    from forgetd.server.daemon.server import Daemon

__all__ = ["HttpBench", "measure_http", "format_http"]

ACK_TARGET = 1.5  # HTTP p50 / gRPC p50
SCRAPE_TARGET = 0.03  # Predict p50 overhead while scraped


@dataclass(frozen=True)
class HttpBench:
    acks: int = 50  # Forgets acknowledged per protocol
    predicts: int = 4000  # 1-row Predicts per condition (scraped, not scraped)
    blocks: int = 20  # alternations of each comparison
    scrape_interval: float = 0.1  # seconds between two scrapes


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def measure_http(bench: HttpBench, daemon: Daemon, progress: Callable[[str], None]) -> dict[str, float]:
    """Both comparisons on a running daemon with its HTTP front; milliseconds, ratios and counts."""
    if daemon.http_port is None:
        raise InvalidConfig("the HTTP bench needs the daemon's HTTP front (ServerConfig.http_listen)")
    runtime = daemon.runtime
    ids = runtime.engine.sample_ids()
    if 2 * bench.acks > len(ids) // 2:
        raise InvalidConfig(f"{2 * bench.acks} HTTP/gRPC acks would remove more than half of the {len(ids)} rows "
                            "left; lower --acks or use a bigger store")
    grpc_address, http_port = f"127.0.0.1:{daemon.port}", daemon.http_port
    figures: dict[str, float] = {}
    if bench.acks:
        progress(f"Forget acknowledgements: {bench.acks} POST /unlearn and {bench.acks} gRPC Forget, alternating")
        figures = _acks(bench, grpc_address, http_port, ids[-2 * bench.acks:])
    progress(f"Predict: {bench.predicts} calls with /metrics scraped every {bench.scrape_interval * 1e3:.0f} ms "
             f"and {bench.predicts} without, alternating")
    features = np.zeros((1, runtime.info.num_features), "<f4").tobytes()
    figures.update(_scraped(bench, grpc_address, http_port, features))
    return figures


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    return answer.status, answer.read()


def _acks(bench: HttpBench, grpc_address: str, http_port: int, ids: list[str]) -> dict[str, float]:
    http_ms: list[float] = []
    grpc_ms: list[float] = []
    keys: list[str] = []
    # http.client, one kept-alive connection: the lightest HTTP client there is, as a gRPC stub is for gRPC.
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=600)
    with grpc.insecure_channel(grpc_address) as channel:
        stub = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)

        def by_http() -> None:
            keys.append(str(uuid.uuid4()))
            body = json.dumps({"sample_id": ids.pop(), "method": DPUS}).encode()
            t = time.perf_counter()
            status, answer = _request(conn, "POST", "/unlearn", body,
                                      {"Idempotency-Key": keys[-1], "Content-Type": "application/json"})
            http_ms.append((time.perf_counter() - t) * 1e3)
            if status != 202:
                raise InvalidConfig(f"POST /unlearn answered {status}: {answer.decode(errors='replace')}")

        def by_grpc() -> None:
            keys.append(str(uuid.uuid4()))
            request = unlearning_service_pb2.ForgetRequest(sample_ids=[ids.pop()], strategy=STRATEGY_TO_PROTO[DPUS],
                                                           request_id=keys[-1])
            t = time.perf_counter()
            stub.Forget(request)
            grpc_ms.append((time.perf_counter() - t) * 1e3)

        per_block = max(1, bench.acks // bench.blocks)
        while len(http_ms) < bench.acks:
            for call in (by_http, by_grpc):
                for _ in range(min(per_block, bench.acks - len(http_ms if call is by_http else grpc_ms))):
                    call()
        for key in keys:  # let the worker catch up, so what follows is not timed against a busy worker
            _request(conn, "GET", f"/unlearn/{key}?wait=true&timeout=600")
    conn.close()
    return {"ack_http_p50_ms": _pct(http_ms, 50), "ack_http_p99_ms": _pct(http_ms, 99),
            "ack_grpc_p50_ms": _pct(grpc_ms, 50), "ack_grpc_p99_ms": _pct(grpc_ms, 99),
            "ack_p50_ratio": _pct(http_ms, 50) / _pct(grpc_ms, 50)}


# ------------------------------------------------------------------------------------------- Predict, scraped

_CHANNEL: dict[str, Any] = {}  # the Predict client process's channel and request, made once by _open


def _open(address: str, features: bytes) -> None:
    channel = grpc.insecure_channel(address)
    _CHANNEL["stub"] = inference_service_pb2_grpc.InferenceServiceStub(channel)
    _CHANNEL["request"] = inference_service_pb2.PredictRequest(features=features, rows=1,
                                                               columns=len(features) // 4)


def _predict_block(n: int) -> list[float]:
    stub, request = _CHANNEL["stub"], _CHANNEL["request"]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        stub.Predict(request)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _scrape(port: int, interval: float, scraping: Event, stop: Event, count: Any) -> None:
    """The scraper process: GET /metrics every `interval` seconds while `scraping` is set."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        if scraping.is_set():
            status, _ = _request(conn, "GET", "/metrics")
            if status != 200:
                raise RuntimeError(f"GET /metrics answered {status}")
            with count.get_lock():
                count.value += 1
        stop.wait(interval)
    conn.close()


def _scraped(bench: HttpBench, grpc_address: str, http_port: int, features: bytes) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    scraping, stop, count = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    scraper = ctx.Process(target=_scrape, args=(http_port, bench.scrape_interval, scraping, stop, count),
                          name="forgetd-bench-scraper", daemon=True)
    scraper.start()
    on: list[float] = []
    off: list[float] = []
    seconds_on = 0.0
    try:
        with ctx.Pool(1, initializer=_open, initargs=(grpc_address, features)) as pool:
            pool.apply(_predict_block, (200,))  # warm-up
            per_block = max(1, bench.predicts // bench.blocks)
            for _ in range(bench.blocks):
                scraping.set()
                t = time.perf_counter()
                on += pool.apply(_predict_block, (per_block,))
                seconds_on += time.perf_counter() - t
                scraping.clear()
                off += pool.apply(_predict_block, (per_block,))
    finally:
        stop.set()
        scraper.join(30)
    return {"predict_scraped_p50_ms": _pct(on, 50), "predict_scraped_p99_ms": _pct(on, 99),
            "predict_unscraped_p50_ms": _pct(off, 50), "predict_unscraped_p99_ms": _pct(off, 99),
            "predict_scraped_mean_ms": float(np.mean(on)), "predict_unscraped_mean_ms": float(np.mean(off)),
            "scrape_overhead_p50": _pct(on, 50) / _pct(off, 50) - 1, "scrapes": float(count.value),
            "scrapes_per_s": count.value / seconds_on if seconds_on else 0.0}


def format_http(f: dict[str, float]) -> list[str]:
    """The report's lines, each figure beside its baseline and target."""
    if not f:
        return []
    lines = ["", f"{'HTTP front':<36}{'p50':>10}{'p99':>12}"]
    if "ack_p50_ratio" in f:
        ack_met = "met" if f["ack_p50_ratio"] <= ACK_TARGET else "missed"
        lines += [
            f"{'POST /unlearn acknowledged (202)':<36}{f['ack_http_p50_ms']:>7.2f} ms{f['ack_http_p99_ms']:>9.2f} ms",
            f"{'gRPC Forget acknowledged':<36}{f['ack_grpc_p50_ms']:>7.2f} ms{f['ack_grpc_p99_ms']:>9.2f} ms",
            f"  HTTP / gRPC p50: {f['ack_p50_ratio']:.2f}x (target <= {ACK_TARGET}x: {ack_met})",
        ]
    scrape_met = "met" if f["scrape_overhead_p50"] <= SCRAPE_TARGET else "missed"
    return lines + [
        f"{'Predict, /metrics scraped':<36}{f['predict_scraped_p50_ms']:>7.3f} ms{f['predict_scraped_p99_ms']:>9.3f} ms"
        f"  ({f['scrapes']:.0f} scrapes, {f['scrapes_per_s']:.1f}/s)",
        f"{'Predict, not scraped':<36}{f['predict_unscraped_p50_ms']:>7.3f} ms{f['predict_unscraped_p99_ms']:>9.3f} ms",
        f"  overhead at p50: {f['scrape_overhead_p50'] * 100:+.1f}% (target <= {SCRAPE_TARGET * 100:.0f}%: "
        f"{scrape_met}); mean {f['predict_scraped_mean_ms']:.3f} vs {f['predict_unscraped_mean_ms']:.3f} ms",
    ]
