"""PNG plots of a `forgetd bench unlearning` run, in the spirit of the hybrid-unlearning paper's Figures 4 and 5.

    plot_results(json.load(open("bench-out/adult/results.json")), "bench-out/adult")
    # -> accuracy.png (Fig. 4), time.png (Fig. 5), mia.png, request_times.png

Only `matplotlib.figure.Figure`, never pyplot: no display is needed, no backend is chosen, and nothing here
touches matplotlib's global state (saving a Figure to .png renders with Agg by itself).
"""

from __future__ import annotations

from pathlib import Path
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from forgetd.server.bench.report import Results
from forgetd.server.vocabulary import DPUS, HS, OHS, RETRAIN, SISA

__all__ = ["plot_results"]

_COLOURS = {DPUS: "#d62728", HS: "#1f77b4", OHS: "#2ca02c", SISA: "#ff7f0e", RETRAIN: "#7f7f7f"}


def _title(results: Results, what: str) -> str:
    c = results["config"]
    e = c["engine"]
    return f"{what}: {c['dataset']}, S={e['slices']} E={e['epochs']} m={c['m']}, {c['requests']} requests, {c['device']}"


def _bars(ax: Axes, names: list[str], values: list[float], fmt: str = "{:.3g}") -> None:
    bars = ax.bar([n.upper() for n in names], values, color=[_COLOURS.get(n, "#444444") for n in names])
    for b in bars:
        ax.annotate(fmt.format(b.get_height()), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=8)


def plot_results(results: Results, out_dir: str | Path) -> list[Path]:
    """Write the plots for `results` (the dict results.json holds) into `out_dir`; return their paths."""
    out = Path(out_dir)
    return [_save(draw(results), out / name) for name, draw in (
        ("accuracy.png", _accuracy), ("time.png", _time), ("mia.png", _mia), ("request_times.png", _request_times))]


def _accuracy(results: Results) -> Figure:
    s = results["strategies"]
    names = list(s)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    acc = [100 * s[n]["accuracy"] for n in names]
    _bars(ax, names, acc, "{:.2f}")  # the gaps that matter are tenths of a point
    before = 100 * results["config"]["accuracy_before"]
    ax.axhline(before, color="black", linestyle=":", linewidth=1, label=f"before forgetting ({before:.2f}%)")
    # Differences are fractions of a point: zoom in on them instead of starting the axis at zero.
    lo, hi = min(acc + [before]), max(acc + [before])
    ax.set_ylim(lo - max(1.0, 0.3 * (hi - lo)), hi + max(0.5, 0.15 * (hi - lo)))
    ax.set_ylabel("test accuracy after all requests (%)")
    ax.set_title(_title(results, "Accuracy"), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _time(results: Results) -> Figure:
    s = results["strategies"]
    names = list(s)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    mean = [s[n]["mean_seconds"] for n in names]
    _bars(ax, names, mean)
    low = [m - s[n]["p50_seconds"] for n, m in zip(names, mean)]
    high = [s[n]["p95_seconds"] - m for n, m in zip(names, mean)]
    # Whiskers from p50 to p95: SISA's and RETRAIN's costs depend on the forgotten sample's slice.
    ax.errorbar([n.upper() for n in names], mean, yerr=[[max(0.0, v) for v in low], [max(0.0, v) for v in high]],
                fmt="none", ecolor="black", capsize=4, linewidth=1)
    ax.set_yscale("log")  # DPUS and SISA differ by orders of magnitude
    ax.set_ylabel("seconds per request (mean; whiskers p50..p95)")
    ax.set_title(_title(results, "Unlearning time"), fontsize=9)
    return fig


def _mia(results: Results) -> Figure:
    s = results["strategies"]
    names = list(s)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    auc = [s[n]["mia_auc"] for n in names]
    _bars(ax, names, auc, "{:.3f}")
    ax.axhline(0.5, color="black", linestyle=":", linewidth=1, label="0.5 (no signal)")
    if RETRAIN in s:
        ref = s[RETRAIN]["mia_auc"]
        ax.axhspan(ref - 0.05, ref + 0.05, color="#7f7f7f", alpha=0.2, label="RETRAIN's AUC +/- 0.05")
    if "original" in results:
        ax.axhline(results["original"]["mia_auc"], color="#9467bd", linestyle="--", linewidth=1,
                   label=f"before forgetting ({results['original']['mia_auc']:.3f})")
    ax.set_ylim(0.25, 0.75)
    ax.set_ylabel("loss-threshold attack AUC, forgotten vs test")
    ax.set_title(_title(results, "Membership inference"), fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def _request_times(results: Results) -> Figure:
    s = results["strategies"]
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for n in s:
        ax.plot(range(1, len(s[n]["request_seconds"]) + 1), s[n]["request_seconds"], marker=".", linewidth=0.6,
                markersize=3, label=n.upper(), color=_COLOURS.get(n))
    ax.set_yscale("log")
    ax.set_xlabel("request")
    ax.set_ylabel("seconds")
    ax.set_title(_title(results, "Time of each request"), fontsize=9)
    ax.legend(fontsize=8, ncol=5, loc="upper center")
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
