"""The PNG of a `forgetd bench unlearning --sweep` run (sweep.png), drawn from its results.json.

Only `matplotlib.figure.Figure`, never pyplot, as in plots.py: no display, no global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from forgetd.server.bench.plots import _COLOURS
from forgetd.server.bench.report import Results
from forgetd.server.vocabulary import RETRAIN, SISA

__all__ = ["plot_sweep"]


def plot_sweep(results: Results, out_dir: str | Path) -> Path:
    """Write sweep.png for `results` into `out_dir` and return its path."""
    draw = {"slices": _slices, "shards": _shards, "budget": _budget}[results["sweep"]]
    fig = draw(results)
    fig.tight_layout()
    path = Path(out_dir) / "sweep.png"
    fig.savefig(path, dpi=120)
    return path


def _log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a log axis over less than a decade labels its minor ticks too


def _title(results: Results, what: str) -> str:
    e = results["engine"]
    return (f"{what}: {results['dataset']}, E={e['epochs']} ({e['epoch_schedule']}), "
            f"{results['requests']} requests per point")


def _strategies(results: Results) -> list[str]:
    return list(dict.fromkeys(k for p in results["points"] for k in p["strategies"]))


def _slices(results: Results) -> Figure:
    """Time per request (log) and accuracy against S, a line per strategy."""
    fig = Figure(figsize=(10, 4.2))
    t_ax, a_ax = fig.subplots(1, 2)
    xs = [p["value"] for p in results["points"]]
    for k in _strategies(results):
        colour = _COLOURS.get(k)
        t_ax.plot(xs, [p["strategies"][k]["mean_seconds"] for p in results["points"]], marker="o", label=k.upper(),
                  color=colour)
        a_ax.plot(xs, [100 * p["strategies"][k]["accuracy"]["mean"] for p in results["points"]], marker="o",
                  label=k.upper(), color=colour)
    a_ax.plot(xs, [100 * p["accuracy_before"]["mean"] for p in results["points"]], linestyle=":", color="black",
              label="before forgetting")
    for ax in (t_ax, a_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("slices S")
        ax.legend(fontsize=8)
    t_ax.set_yscale("log")
    t_ax.set_ylabel("mean seconds per request")
    a_ax.set_ylabel("test accuracy after the requests (%)")
    t_ax.set_title(_title(results, "Time per request"), fontsize=9)
    a_ax.set_title(_title(results, "Accuracy"), fontsize=9)
    return fig


def _shards(results: Results) -> Figure:
    """Accuracy against time per request: a marker per (K, strategy), a line per (strategy, aggregation)."""
    fig = Figure(figsize=(7, 4.6))
    ax = fig.subplots()
    for k in _strategies(results):
        for agg, style in (("mean", "-"), ("vote", "--")):
            pts = [(p["strategies"][k]["mean_seconds"], 100 * p["strategies"][k]["accuracy"][agg], p["value"])
                   for p in results["points"]]
            ax.plot([t for t, _, _ in pts], [a for _, a, _ in pts], marker="o", linestyle=style,
                    color=_COLOURS.get(k), label=f"{k.upper()}, {agg}")
            if agg == "mean":
                for t, a, v in pts:
                    ax.annotate(f"K={v}", (t, a), fontsize=7, textcoords="offset points", xytext=(4, 4))
    _log_x(ax)
    ax.set_xlabel("mean seconds per request")
    ax.set_ylabel("test accuracy after the requests (%)")
    ax.set_title(_title(results, "Shards: accuracy against unlearning time"), fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _budget(results: Results) -> Figure:
    """The HS/OHS frontier over m: accuracy against time per request, SISA and RETRAIN as reference points."""
    fig = Figure(figsize=(7, 4.6))
    ax = fig.subplots()
    for k in _strategies(results):
        pts = [(p["strategies"][k]["mean_seconds"], 100 * p["strategies"][k]["accuracy"]["mean"], p["m"])
               for p in results["points"] if k in p["strategies"]]
        _frontier(ax, k, pts, reference=k in (SISA, RETRAIN))
    _log_x(ax)
    ax.set_xlabel("mean seconds per request")
    ax.set_ylabel("test accuracy after the requests (%)")
    ax.set_title(_title(results, "Budget: the speed-accuracy frontier over m"), fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _frontier(ax: Axes, k: str, pts: list[Any], reference: bool) -> None:
    colour = _COLOURS.get(k)
    if reference:  # m changes nothing SISA or RETRAIN does: one cloud of points, no line through m
        ax.scatter([t for t, _, _ in pts], [a for _, a, _ in pts], color=colour, marker="s", label=k.upper())
        return
    ax.plot([t for t, _, _ in pts], [a for _, a, _ in pts], marker="o", color=colour, label=k.upper())
    for t, a, m in pts:
        ax.annotate(f"m={m}", (t, a), fontsize=7, textcoords="offset points", xytext=(4, 4))
