"""`forgetd bench serving` (wired into `forgetd bench` by client/cli/main.py): what the daemon costs over bare gRPC, and how fast a Forget is acknowledged and applied.

Figures, not a test. Predict is measured side by side with a bare grpcio service that answers the same
request with a prebuilt response of the same size, in the same process and the same run, alternating in
blocks so that machine noise hits both alike; the ratio is the daemon's overhead (validation, the model,
building the answer). At 1 row the Open Inference Protocol's two forms take their turns in the same blocks
(fronts.py): ModelInfer beside Predict, REST infer beside a bare uvicorn echo. Forgets run against a private
copy of the store (the bench never changes yours).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import grpc
import numpy as np

from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.api.convert import STRATEGY_TO_PROTO
from forgetd.server.bench import BENCH_STRATEGIES
from forgetd.server.bench.http_serving import HttpBench, format_http, measure_http  # the HTTP API's figures
from forgetd.server.bench.fronts import (FRONTS, FrontTargets, HttpEcho, http_answer, interleaved, model_infer_request,
                                         one_row_calls, rest_request)
from forgetd.server.cli.options import DEVICE
from forgetd.server.config import ServerConfig
from forgetd.server.daemon.server import Daemon, create_server
from forgetd.server.errors import ForgetdError, InvalidConfig
from forgetd.server.store.layout import StorePaths
from forgetd.server.vocabulary import CONCRETE_STRATEGIES, DPUS

if TYPE_CHECKING:
    from forgetd.server.runtime.runtime import Runtime

_T = TypeVar("_T")


@dataclass(frozen=True)
class ServingBench:
    store: Path | None = None  # None: train the synthetic demo (train_rows) into a temporary store
    train_rows: int = 2000
    latency_calls: int = 2000  # 1-row Predicts per server, for p50/p99
    throughput_calls: int = 200  # batched Predicts per server and batch size
    batch_sizes: tuple[int, ...] = (64, 1024)
    acks: int = 50  # Forgets with wait=false
    forgets: int = 20  # Forgets with wait=true per strategy
    strategies: tuple[str, ...] = BENCH_STRATEGIES
    seed: int = 0
    device: str = "auto"  # where the daemon holds the model and runs Predict


@dataclass
class Figures:
    device: str = ""
    rows: int = 0
    predict: dict[str, dict[str, float]] = field(default_factory=dict)  # "1 row", "64 rows"... -> figures
    fronts: dict[str, dict[str, float]] = field(default_factory=dict)  # 1 row: FRONTS name -> p50_ms, p99_ms
    front_ratios: dict[str, float] = field(default_factory=dict)  # p50 over p50, "model_infer/predict"...
    forget_ack_ms: dict[str, float] = field(default_factory=dict)
    forget_done_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # strategy -> p50/p99
    http: dict[str, float] = field(default_factory=dict)  # POST /unlearn and scraping, beside gRPC (http_serving.py)


class _Echo(inference_service_pb2_grpc.InferenceServiceServicer):
    """The baseline: answers a Predict with a prebuilt response of the same size, doing nothing else."""

    def __init__(self, responses: dict[int, inference_service_pb2.PredictResponse]) -> None:
        self._responses = responses

    def Predict(self, request: inference_service_pb2.PredictRequest,
                context: grpc.ServicerContext) -> inference_service_pb2.PredictResponse:
        return self._responses[request.rows]


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _client(targets: FrontTargets, wire: dict[int, bytes],
            plan: list[tuple[int, int]]) -> dict[int, dict[str, list[float]]]:
    """The load generator (in a child process): per batch size, timed calls of every front it is measured on."""
    out = {}
    with contextlib.ExitStack() as stack:
        one_row = one_row_calls(stack, targets)
        ours, echo = (stack.enter_context(grpc.insecure_channel(a)) for a in (targets.grpc, targets.echo))
        stub_a, stub_b = (inference_service_pb2_grpc.InferenceServiceStub(c) for c in (ours, echo))
        for n, calls in plan:
            request = inference_service_pb2.PredictRequest.FromString(wire[n])
            batched = {"predict": lambda: stub_a.Predict(request), "echo": lambda: stub_b.Predict(request)}
            out[n] = interleaved(one_row if n == 1 else batched, calls)
    return out


def run_serving_bench(bench: ServingBench, progress: Callable[[str], None] = lambda _m: None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="forgetd-bench-") as tmp:
        store = Path(tmp) / "store"
        if bench.store is None:
            progress(f"training a {bench.train_rows}-row synthetic store")
            _train(store, bench.train_rows, bench.device)
        else:
            shutil.copytree(bench.store, store)  # forgets change a store: never the caller's
            ledger = StorePaths(store).ledger
            for suffix in ("", "-wal", "-shm"):  # the ledger and SQLite's files beside it: a fresh ledger
                ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)
        daemon, port = create_server(ServerConfig(store=store, listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                                                  device=bench.device))
        with daemon:
            return _measure(bench, daemon, port, progress)


def _train(path: Path, rows: int, device: str) -> None:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine
    from forgetd.server.cli.serve import DEMO_EPOCHS, DEMO_SCHEDULE, DEMO_SLICES

    config = EngineConfig(slices=DEMO_SLICES, epochs=DEMO_EPOCHS, epoch_schedule=DEMO_SCHEDULE, device=device)
    Engine.train(load_dataset("synthetic", n=rows, seed=0), config, path).close()


def _measure(bench: ServingBench, daemon: Daemon, port: int, progress: Callable[[str], None]) -> Figures:
    runtime = daemon.runtime
    figures = Figures(device=runtime.info.device)
    f, c = runtime.info.num_features, runtime.info.num_classes
    rng = np.random.default_rng(bench.seed)
    sizes = (1, *bench.batch_sizes)
    requests = {n: inference_service_pb2.PredictRequest(features=rng.normal(size=(n, f)).astype("<f4").tobytes(),
                                                        rows=n, columns=f) for n in sizes}
    # The echo's answers are the daemon's own, so both send the same bytes back.
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    inference = inference_service_pb2_grpc.InferenceServiceStub(channel)
    responses = {n: inference.Predict(requests[n]) for n in sizes}
    echo = grpc.server(futures.ThreadPoolExecutor(max_workers=daemon.config.threads),
                       options=[("grpc.max_receive_message_length", daemon.config.max_message_bytes),
                                ("grpc.max_send_message_length", daemon.config.max_message_bytes)])
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(_Echo(responses), echo)
    echo_port = echo.add_insecure_port("127.0.0.1:0")
    echo.start()
    assert daemon.http_port is not None
    row = np.frombuffer(requests[1].features, dtype="<f4").reshape(1, f)
    rest_body, rest_headers = rest_request(row)
    http_echo = HttpEcho(*http_answer(daemon.http_port, rest_body, rest_headers))  # the daemon's own answer
    http_echo.front.start()
    try:
        # The client runs in its own process, as real clients do: sharing this process's GIL with the
        # servers would charge the client's own work to whichever server was measured.
        targets = FrontTargets(f"127.0.0.1:{port}", f"127.0.0.1:{echo_port}", daemon.http_port, http_echo.front.port,
                               requests[1].SerializeToString(), model_infer_request(row).SerializeToString(),
                               rest_body, tuple(rest_headers.items()))
        wire = {n: r.SerializeToString() for n, r in requests.items()}
        plan = [(n, bench.latency_calls if n == 1 else bench.throughput_calls) for n in sizes]
        progress("Predict: " + ", ".join(f"{calls} calls of {n} row(s)" for n, calls in plan)
                 + " on forgetd and on the bare echo, alternating; at 1 row also ModelInfer, REST infer and a "
                 "bare uvicorn echo")
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            _record(pool.apply(_client, (targets, wire, plan)), figures)
        _forgets(bench, runtime, channel, figures, progress)
        figures.http = measure_http(HttpBench(acks=bench.acks, predicts=bench.latency_calls), daemon, progress)
    finally:
        channel.close()
        echo.stop(0)
        http_echo.front.stop(0)
    return figures


def _record(timings: dict[int, dict[str, list[float]]], figures: Figures) -> None:
    for n, timed in timings.items():
        ours, bare = timed["predict"], timed["echo"]
        figures.predict[f"{n} row" + ("s" if n > 1 else "")] = {
            "forgetd_p50_ms": _pct(ours, 50) * 1e3, "forgetd_p99_ms": _pct(ours, 99) * 1e3,
            "echo_p50_ms": _pct(bare, 50) * 1e3, "echo_p99_ms": _pct(bare, 99) * 1e3,
            "forgetd_rows_per_s": n / statistics.fmean(ours), "echo_rows_per_s": n / statistics.fmean(bare),
            "p50_ratio": _pct(ours, 50) / _pct(bare, 50),
        }  # fmt: skip
    one = timings[1]
    figures.fronts = {name: {"p50_ms": _pct(one[name], 50) * 1e3, "p99_ms": _pct(one[name], 99) * 1e3}
                      for name in FRONTS}
    p50 = {name: f["p50_ms"] for name, f in figures.fronts.items()}
    figures.front_ratios = {"model_infer/predict": p50["model_infer"] / p50["predict"],
                            "rest/rest_echo": p50["rest"] / p50["rest_echo"],
                            "rest/predict": p50["rest"] / p50["predict"]}


def _forgets(bench: ServingBench, runtime: Runtime, channel: grpc.Channel, figures: Figures,
             progress: Callable[[str], None]) -> None:
    unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
    ids = [str(i) for i in np.random.default_rng(bench.seed).permutation(sorted(runtime.engine.sample_ids()))]
    figures.rows = len(ids)
    need = bench.acks + bench.forgets * len(bench.strategies)
    if need > len(ids) // 2:
        raise InvalidConfig(f"{need} forgets would remove more than half of the {len(ids)} training rows; "
                            "lower --acks/--forgets or use a bigger store")
    progress(f"Forget acknowledgements: {bench.acks} with wait=false")
    acks = []
    sent = []
    for _ in range(bench.acks):
        request = unlearning_service_pb2.ForgetRequest(sample_ids=[ids.pop()], strategy=STRATEGY_TO_PROTO[DPUS],
                                                       request_id=str(uuid.uuid4()))
        t = time.perf_counter()
        unlearning.Forget(request)
        acks.append(time.perf_counter() - t)
        sent.append(request)
    for request in sent:  # let the worker catch up before timing completions
        request.wait = True
        unlearning.Forget(request)
    if acks:
        figures.forget_ack_ms = {"p50": _pct(acks, 50) * 1e3, "p99": _pct(acks, 99) * 1e3}
    for name in bench.strategies:
        progress(f"Forget completions, {name}: {bench.forgets} with wait=true")
        done = []
        for _ in range(bench.forgets):
            request = unlearning_service_pb2.ForgetRequest(sample_ids=[ids.pop()], strategy=STRATEGY_TO_PROTO[name],
                                                           wait=True)
            t = time.perf_counter()
            unlearning.Forget(request)
            done.append(time.perf_counter() - t)
        if done:
            figures.forget_done_ms[name] = {"p50": _pct(done, 50) * 1e3, "p99": _pct(done, 99) * 1e3}


def format_figures(figures: Figures) -> str:
    lines = [f"forgetd bench serving (device {figures.device}, {figures.rows} training rows)", "",
             f"{'Predict':<12}{'forgetd p50':>13}{'p99':>10}{'echo p50':>11}{'p99':>10}{'ratio':>8}"
             f"{'forgetd rows/s':>16}{'echo rows/s':>14}"]
    for name, p in figures.predict.items():
        lines.append(f"{name:<12}{p['forgetd_p50_ms']:>10.3f} ms{p['forgetd_p99_ms']:>7.3f} ms{p['echo_p50_ms']:>8.3f} ms"
                     f"{p['echo_p99_ms']:>7.3f} ms{p['p50_ratio']:>7.2f}x{p['forgetd_rows_per_s']:>16,.0f}"
                     f"{p['echo_rows_per_s']:>14,.0f}")
    lines += ["", f"{'1 row, every front':<30}{'p50':>10}{'p99':>12}"]
    labels = {"predict": "forgetd.v1 Predict", "echo": "bare gRPC echo", "model_infer": "OIP ModelInfer (gRPC)",
              "rest": "OIP REST infer (HTTP)", "rest_echo": "bare uvicorn echo"}
    for name, d in figures.fronts.items():
        lines.append(f"{labels[name]:<30}{d['p50_ms']:>7.3f} ms{d['p99_ms']:>9.3f} ms")
    if figures.front_ratios:
        r = figures.front_ratios
        lines.append(f"ModelInfer / Predict (p50): {r['model_infer/predict']:.2f}x (target <= 1.2x); "
                     f"REST / uvicorn echo: {r['rest/rest_echo']:.2f}x; REST / Predict: {r['rest/predict']:.2f}x")
    lines.append("")
    if figures.forget_ack_ms:
        a = figures.forget_ack_ms
        lines.append(f"Forget acknowledged (wait=false): p50 {a['p50']:.2f} ms, p99 {a['p99']:.2f} ms")
    lines.append(f"{'Forget applied (wait=true)':<28}{'p50':>10}{'p99':>12}")
    for name, d in figures.forget_done_ms.items():
        lines.append(f"{name:<28}{d['p50']:>7.2f} ms{d['p99']:>9.2f} ms")
    return "\n".join(lines + format_http(figures.http))


def _csv(kind: Callable[[str], _T]) -> Callable[[click.Context, click.Parameter, str], tuple[_T, ...]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> tuple[_T, ...]:
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return parse


def _strategy(name: str) -> str:
    if name not in CONCRETE_STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(CONCRETE_STRATEGIES)}")
    return name


@click.command("serving", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark a copy of this store. Default: a freshly trained synthetic store.")
@click.option("--train-rows", type=click.IntRange(min=50), default=2000, show_default=True)
@click.option("--latency-calls", type=click.IntRange(min=10), default=2000, show_default=True)
@click.option("--throughput-calls", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--batch-sizes", default="64,1024", show_default=True, callback=_csv(int))
@click.option("--acks", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--forgets", type=click.IntRange(min=0), default=20, show_default=True, help="Per strategy.")
@click.option("--strategies", default=",".join(BENCH_STRATEGIES), show_default=True, callback=_csv(_strategy))
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def serving(store: Path | None, train_rows: int, latency_calls: int, throughput_calls: int,
            batch_sizes: tuple[int, ...], acks: int, forgets: int, strategies: tuple[str, ...], device: str,
            as_json: bool) -> None:
    """Predict latency and throughput beside a bare gRPC echo; 1-row ModelInfer (gRPC) and REST infer
    (HTTP) beside Predict and a bare uvicorn echo; Forget ack and completion latency."""
    config = ServingBench(store, train_rows, latency_calls, throughput_calls, batch_sizes, acks, forgets, strategies,
                          device=device)
    try:
        figures = run_serving_bench(config, progress=lambda m: click.echo(m, err=True))
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(asdict(figures), indent=2) if as_json else format_figures(figures))
