"""PNG plots of a `forgetd bench scale` run: one per figure against n, its target and its baseline drawn in.

Only `matplotlib.figure.Figure`, never pyplot: no display, no global backend state (a Figure saved to .png
renders with Agg by itself).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from forgetd.server.bench.scale_figures import PARTS
from forgetd.server.bench.scale_report import TARGETS, flat

__all__ = ["plot_scale"]

# figure file -> (title, y label, [(flat key, legend)], scale applied to the values)
_SERIES: dict[str, tuple[str, str, list[tuple[str, str]], float]] = {
    "training.png": ("training time per sample read", "us per sample",
                     [("engine_us_per_sample", "forgetd"), ("recording_us_per_sample", "bare loop, recording"),
                      ("bare_us_per_sample", "bare loop")], 1.0),
    "admission.png": ("acknowledged Forgets per second", "per second",
                      [("acks_per_second", "forgetd, concurrent clients"),
                       ("sqlite_n_threads_commits_per_second", "raw SQLite single commits, as many threads"),
                       ("sqlite_1_thread_commits_per_second", "raw SQLite single commits, 1 thread")], 1.0),
    "rows.png": ("row store on disk / raw float32 features", "ratio",
                 [("rows_over_raw", "block format"), ("rows_v1_over_raw", "one record a row (before)")], 1.0),
    "store_parts.png": ("store on disk, by part", "MiB", [(f"{p}_bytes", p) for p in PARTS], 2.0**-20),
    "memory.png": ("daemon memory after the first Predict", "MiB",
                   [("rss_bytes", "VmRSS"), ("hwm_bytes", "VmHWM")], 2.0**-20),
}


def plot_scale(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots for `results` (what results.json holds) into `out_dir`; return their paths."""
    out = Path(out_dir)
    figs = [flat(r) for r in sorted(results["runs"], key=lambda r: r["n"])]
    ns = [f["n"] for f in figs]
    written = []
    for t in TARGETS:
        values = [f.get(t.key, math.nan) for f in figs]  # NaN: a gap where a size did not measure it
        if all(math.isnan(v) for v in values):
            continue
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot(ns, values, "o-", label="measured")
        ax.axhline(t.target, color="#2ca02c", ls="--", label=f"target {t.op} {t.target:g}")
        if t.before is not None:
            ax.axhline(t.before, color="#d62728", ls=":", label=f"before: {t.before:g}")
        _finish(fig, ax, t.label, t.unit.strip() or "ratio")
        written.append(_save(fig, out / f"{t.key}.png"))
    for name, (title, ylabel, series, factor) in _SERIES.items():
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        drawn = False
        for key, legend in series:
            values = [f.get(key, math.nan) * factor for f in figs]
            if not all(math.isnan(v) for v in values):
                ax.plot(ns, values, "o-", label=legend)
                drawn = True
        if drawn:
            _finish(fig, ax, title, ylabel)
            written.append(_save(fig, out / name))
    return written


def _finish(fig: Figure, ax: Any, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("training rows n")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
