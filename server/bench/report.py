"""`forgetd bench unlearning`'s results read against the hybrid-unlearning paper's claims and our targets,
and written as Markdown (results.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forgetd.server.bench import BENCH_STRATEGIES
from forgetd.server.vocabulary import DPUS, HS, OHS, RETRAIN, SISA

__all__ = ["Results", "Check", "assess", "write_markdown"]

# What results.json holds, as json.load gives it back: nested JSON, so no finer type than this.
Results = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One claim or target, measured."""

    name: str  # what is claimed
    source: str  # "paper" | "target"
    measured: str  # the number(s), in words
    met: bool


def assess(results: Results) -> list[Check]:
    """Each of the paper's claims and our targets against the measured numbers (a full run's results)."""
    s = results["strategies"]
    if not all(k in s for k in BENCH_STRATEGIES):
        return []
    t = {k: v["mean_seconds"] for k, v in s.items()}
    pts = {k: 100 * v["accuracy"] for k, v in s.items()}
    hs_x, ohs_x = t[SISA] / t[HS], t[SISA] / t[OHS]
    # The same ratio in samples read: what the speed-up would be with no fixed cost per request (publishing a
    # version, erasing rows) and no noise from other work on the machine.
    read = {k: max(v["samples_read"], 1) for k, v in s.items()}
    hs_r, ohs_r = read[SISA] / read[HS], read[SISA] / read[OHS]
    ref_auc = s[RETRAIN]["mia_auc"]
    out = [
        Check("HS 6x-8x faster than SISA", "paper", f"{hs_x:.1f}x (samples read {hs_r:.1f}x)", 6 <= hs_x),
        Check("OHS 1.5x-6x faster than SISA", "paper", f"{ohs_x:.1f}x (samples read {ohs_r:.1f}x)", 1.5 <= ohs_x),
        Check("HS >= 6x faster than SISA", "target", f"{hs_x:.1f}x (samples read {hs_r:.1f}x)", hs_x >= 6),
        Check("OHS >= 2x faster than SISA", "target", f"{ohs_x:.1f}x (samples read {ohs_r:.1f}x)", ohs_x >= 2),
        Check("DPUS up to 5 points less accurate than HS", "paper",
              f"DPUS {pts[DPUS]:.2f}, HS {pts[HS]:.2f} ({pts[HS] - pts[DPUS]:+.2f} points)",
              0 <= pts[HS] - pts[DPUS] <= 5),
        Check("HS within 0.5 points of SISA", "paper+target", f"HS {pts[HS]:.2f}, SISA {pts[SISA]:.2f}",
              abs(pts[HS] - pts[SISA]) <= 0.5),
        Check("OHS comparable to SISA (within 0.5 points)", "paper", f"OHS {pts[OHS]:.2f}, SISA {pts[SISA]:.2f}",
              abs(pts[OHS] - pts[SISA]) <= 0.5),
        Check("OHS within 0.3 points of RETRAIN", "target", f"OHS {pts[OHS]:.2f}, RETRAIN {pts[RETRAIN]:.2f}",
              abs(pts[OHS] - pts[RETRAIN]) <= 0.3),
    ]
    for k in (DPUS, HS, OHS, SISA):
        a = s[k]["mia_auc"]
        out.append(Check(f"{k.upper()}: forgotten samples' attack AUC within 0.05 of RETRAIN's", "target",
                         f"{a:.3f} vs {ref_auc:.3f}", abs(a - ref_auc) <= 0.05))
    for k in (DPUS, HS, OHS, SISA):
        rate, test_rate = s[k]["shadow_member_rate"], s[k]["shadow_test_member_rate"]
        ref = s[RETRAIN]["shadow_member_rate"]
        out.append(Check(f"{k.upper()}: shadow attack calls forgotten samples members no more than for RETRAIN (+0.05)",
                         "paper", f"{rate:.2f} (RETRAIN {ref:.2f}, test rows {test_rate:.2f})", rate <= ref + 0.05))
    n = results["config"]["requests"]
    for k in (HS, OHS, SISA):
        b = s[k]["burst_seconds"]
        if b is not None:
            out.append(Check(f"{k.upper()}: burst of {n} coalesced requests under 3x one SISA request", "target",
                             f"{b:.2f} s vs 3 x {t[SISA]:.2f} s", b < 3 * t[SISA]))
    return out


def write_markdown(results: Results) -> str:
    """results.md: the run's settings, a row per strategy, the attacks before forgetting, and the checks."""
    c = results["config"]
    lines = []
    if c:
        e = c["engine"]
        lines += [
            f"Data {c['dataset']} ({c['num_train']} train, {c['num_test']} test rows); MLP {e['hidden_sizes']}, "
            f"batch {e['batch_size']}, Adam lr {e['learning_rate']}; K={e['shards']}, S={e['slices']}, E={e['epochs']}, "
            f"budget {c['budget']} samples read (m={c['m']}); {c['requests']} single-sample requests; "
            f"device {c['device']} ({c['device_name']}), torch {c['torch']}. Accuracy before forgetting "
            f"{100 * c['accuracy_before']:.2f}%; training took {c['train_seconds']:.1f} s.",
            "",
        ]
    s = results["strategies"]
    lines += [  # --newton-only runs none of these: newton_bench.newton_markdown has its rows
        "| strategy | mean s/request | p50 s | p95 s | x SISA | accuracy % | MIA AUC ± SE | TPR@1%FPR | shadow member rate | samples read | burst s | guarantees |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ] if s else []
    for k, v in s.items():
        speed = f"{s[SISA]['mean_seconds'] / v['mean_seconds']:.1f}" if SISA in s else "-"
        burst = "-" if v["burst_seconds"] is None else f"{v['burst_seconds']:.3f}"
        g = ", ".join(f"{n} {kind}" for kind, n in v["guarantees"].items())
        lines.append(
            f"| {k.upper()} | {v['mean_seconds']:.4f} | {v['p50_seconds']:.4f} | {v['p95_seconds']:.4f} | {speed} | "
            f"{100 * v['accuracy']:.2f} | {v['mia_auc']:.3f} ± {v.get('mia_auc_se', float('nan')):.3f} | {v['mia_tpr_at_1pct_fpr']:.2f} | "
            f"{v['shadow_member_rate']:.2f} | {v['samples_read']} | {burst} | {g} |"
        )
    if "original" in results:
        o = results["original"]
        lines += ["", f"Before forgetting, the same samples: MIA AUC {o['mia_auc']:.3f} ± {o.get('mia_auc_se', float('nan')):.3f}, TPR@1%FPR "
                      f"{o['mia_tpr_at_1pct_fpr']:.2f}, shadow member rate {o['shadow_member_rate']:.2f} "
                      f"(test rows {o['shadow_test_member_rate']:.2f}; shadow attack AUC on shadow data "
                      f"{o['shadow_attack_auc']:.3f})."]
    if "sisa_equals_retrain" in results:
        lines += ["", f"SISA's final model is bitwise RETRAIN's: {'yes' if results['sisa_equals_retrain'] else 'NO'}."]
    if results.get("checks"):
        lines += ["", "| claim or target | source | measured | met |", "|---|---|---|---|"]
        lines += [f"| {ch['name']} | {ch['source']} | {ch['measured']} | {'met' if ch['met'] else 'missed'} |"
                  for ch in results["checks"]]
    if not results.get("complete"):
        lines += ["", "Partial results: the run has not finished."]
    return "\n".join(lines) + "\n"
