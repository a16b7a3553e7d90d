"""lira.png of a `forgetd bench unlearning` run: LiRA's AUC on each forget set, before forgetting and after
each strategy, with its 95% interval, RETRAIN's band of +/- privacy.AUC_TOLERANCE around it.

Only `matplotlib.figure.Figure`, never pyplot, as in plots.py.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from forgetd.server.bench.plots import _COLOURS
from forgetd.server.bench.privacy import AUC_TOLERANCE
from forgetd.server.bench.report import Results
from forgetd.server.vocabulary import RETRAIN

__all__ = ["plot_lira"]


def plot_lira(results: Results, out_dir: str | Path) -> Path | None:
    """Write lira.png into `out_dir` (None when the run had no LiRA)."""
    sets = [("random", results.get("original", {}), results.get("strategies", {}))]
    v = results.get("vulnerable")
    if v:
        sets.append(("most vulnerable", v.get("original", {}), v.get("strategies", {})))
    sets = [(n, o, s) for n, o, s in sets if "lira" in o]
    if not sets:
        return None
    fig = Figure(figsize=(5 * len(sets) + 1, 4.2))
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, (name, before, strategies) in zip(axes, sets):
        names = ["before"] + [k for k in strategies if "lira" in strategies[k]]
        entries = [before["lira"]] + [strategies[k]["lira"] for k in names[1:]]
        auc = [e["auc"] for e in entries]
        low = [e["auc"] - e["auc_interval"][0] for e in entries]
        high = [e["auc_interval"][1] - e["auc"] for e in entries]
        labels = [n.upper() if n != "before" else "before" for n in names]
        ax.bar(labels, auc, color=[_COLOURS.get(n, "#9467bd") for n in names])
        ax.errorbar(labels, auc, yerr=[low, high], fmt="none", ecolor="black", capsize=4, linewidth=1)
        if RETRAIN in strategies and "lira" in strategies[RETRAIN]:
            ref = strategies[RETRAIN]["lira"]["auc"]
            ax.axhspan(ref - AUC_TOLERANCE, ref + AUC_TOLERANCE, color="#7f7f7f", alpha=0.3,
                       label=f"RETRAIN +/- {AUC_TOLERANCE}")
        ax.axhline(0.5, color="black", linestyle=":", linewidth=1, label="0.5 (chance)")
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("LiRA AUC (online), forgotten vs test rows")
        ax.set_title(f"LiRA on the {name} forget set ({before['lira']['n_members']} rows)", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = Path(out_dir) / "lira.png"
    fig.savefig(path, dpi=120)
    return path
