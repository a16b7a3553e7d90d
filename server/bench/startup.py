"""How long a daemon takes to serve its first Predict, and what it holds in memory then. Figures, not a test.

    figures = startup_figures(Path("store"))   # serves it in a subprocess, as an operator would

The daemon runs as `forgetd serve` in its own process (DaemonProcess), so the seconds count the interpreter's
start and torch's import as well, and the memory is that process's alone (VmRSS and VmHWM from
/proc/<pid>/status, read right after its first Predict). The phases of Engine.open are measured in this
process from the loaded store's own record of them (LoadedStore.open_phases).

The first serve of a store writes its genesis and copies the store into the genesis vault, which no later
start does again; a store without a ledger is therefore served once first, and that start is reported apart.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import grpc
from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc

from forgetd.server.bench.processes import DaemonProcess, wait_serving
from forgetd.server.store.layout import StorePaths

__all__ = ["startup_figures", "open_phases", "proc_memory"]


def startup_figures(store_dir: Path, *, device: str = "cpu", timeout: float = 600.0) -> dict[str, Any]:
    """Seconds from the daemon's process start to health SERVING and to its first Predict answered, its
    resident memory after that Predict (GiB, and as a multiple of the raw float32 training features), and
    the seconds of each phase of Engine.open."""
    import numpy as np

    from forgetd.server.engine.state import StoreMeta

    paths = StorePaths(Path(store_dir))
    meta = StoreMeta.read(paths)
    rows = int(np.load(paths.refs, mmap_mode="r").shape[0])
    out: dict[str, Any] = {"rows": rows, "features": meta.num_features,
                           "raw_features_gib": rows * meta.num_features * 4 / 2**30}
    if not paths.ledger.exists():
        t0 = time.monotonic()
        DaemonProcess.start(paths.root, "--device", device, timeout=timeout).stop()
        out["genesis_serve_seconds"] = time.monotonic() - t0
    t0 = time.monotonic()
    daemon = DaemonProcess.spawn(paths.root, "--device", device)
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            if not wait_serving(channel, timeout):
                raise RuntimeError(f"forgetd serve never said SERVING:\n{daemon.log}")
            out["serving_seconds"] = time.monotonic() - t0
            _predict_one(channel, meta.num_features, timeout)
            out["first_predict_seconds"] = time.monotonic() - t0
            out.update(proc_memory(daemon.proc.pid))
    finally:
        daemon.stop()
    out["rss_over_raw"] = out["vm_rss_gib"] / out["raw_features_gib"]
    out["hwm_over_raw"] = out["vm_hwm_gib"] / out["raw_features_gib"]
    out["open_phases"] = open_phases(paths.root, device)
    return out


def open_phases(store_dir: Path, device: str = "cpu") -> dict[str, float]:
    """Seconds of each phase of Engine.open on `store_dir` in this process ("total" the whole call)."""
    from forgetd.server.engine.engine import Engine

    t0 = time.perf_counter()
    with Engine.open(store_dir, device=device) as engine:
        total = time.perf_counter() - t0
        phases = dict(getattr(engine._store, "open_phases", {}))
    phases["total"] = total
    return phases


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of process `pid` in GiB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[f"{name.lower().replace('vm', 'vm_')}_gib"] = int(value.split()[0]) / 2**20  # kB
    return fields


def _predict_one(channel: grpc.Channel, features: int, timeout: float) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
    request = inference_service_pb2.PredictRequest(features=struct.pack(f"<{features}f", *([0.0] * features)),
                                                   rows=1, columns=features)
    stub.Predict(request, timeout=timeout)


if __name__ == "__main__":  # python -m forgetd.server.bench.startup STORE
    import json
    import sys

    print(json.dumps(startup_figures(Path(sys.argv[1])), indent=2))
