"""The targets of `forgetd bench scale`, the met/missed rule, the growth ratios between sizes, and results.md.

Every figure is read from one flat dict per size (`flat`), so the rule is a pure function of numbers: a
target is met when the figure at the largest size is on the right side of it, and a growth ratio is met
when the figure grew by at most 1.05x the growth of the data (2.1x for twice the rows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from forgetd.server.bench.scale_figures import PARTS

__all__ = ["Target", "Verdict", "TARGETS", "GROWN", "GROWTH_SLACK", "flat", "judge", "growth", "verdicts",
           "format_markdown", "format_verdicts"]

GROWTH_SLACK = 1.05  # a figure may grow 5% faster than the data before it stops counting as linear


@dataclass(frozen=True)
class Target:
    key: str  # the figure, a key of `flat`
    label: str
    op: str  # "<=" or ">="
    target: float
    before: float | None  # the figure before the scale work, for the table; None when there was none
    unit: str = "x"


@dataclass(frozen=True)
class Verdict:
    key: str
    label: str
    value: float | None  # None: not measured in this run (a skipped part)
    op: str
    target: float
    before: float | None
    met: bool | None
    unit: str = "x"

    @property
    def word(self) -> str:
        return "not measured" if self.met is None else ("met" if self.met else "missed")


TARGETS = (
    Target("store_over_raw", "store on disk / raw float32 features", "<=", 2.0, 5.3),
    Target("increments_per_sample_per_param", "increments bytes per sample per parameter", "<=", 0.03, 0.0876, ""),
    Target("first_predict_seconds", "daemon first Predict after process start", "<=", 5.0, 20.9, " s"),
    Target("rss_over_raw", "daemon resident memory after it / raw features", "<=", 1.5, 4.6),
    Target("training_over_recording", "training time per sample / bare loop recording the same increments",
           "<=", 1.5, None),
    Target("acks_over_sqlite", "acknowledged Forgets/s (8 clients) / raw single-commit SQLite", ">=", 3.0, None),
)

# Figures that should grow like the data: their ratio between sizes is judged against the data's.
# Training grows by its CPU seconds: its wall clock on a shared machine moves with the others' load.
GROWN = ("store_bytes", *(f"{p}_bytes" for p in PARTS), "train_cpu_seconds", "first_predict_seconds", "rss_bytes")


def flat(run: dict[str, Any]) -> dict[str, float]:
    """One size's figures, by name (absent when their part was skipped or failed)."""
    out: dict[str, float] = {"n": float(run["n"])}
    store, train, start, adm, rows = (run.get(k) or {} for k in ("store", "training", "startup", "admission", "rows"))
    raw = store.get("raw_feature_bytes") or run["n"] * run["features"] * 4
    for key in ("store_bytes", "store_over_raw", "increments_bytes", "increments_per_sample_per_param"):
        if key in store:
            out[key] = float(store[key])
    for part, size in (store.get("parts_bytes") or {}).items():
        out[f"{part}_bytes"] = float(size)
    for key in ("train_seconds", "train_cpu_seconds", "cpu_over_recording", "engine_us_per_sample", "engine_loop_us_per_sample", "recording_us_per_sample",
                "bare_us_per_sample"):
        if key in train:
            out[key] = float(train[key])
    if "engine_us_per_sample" in train and train.get("recording_us_per_sample"):
        out["training_over_recording"] = train["engine_us_per_sample"] / train["recording_us_per_sample"]
    for key in ("first_predict_seconds", "rss_bytes", "hwm_bytes"):
        if key in start:
            out[key] = float(start[key])
    if "rss_bytes" in start:
        out["rss_over_raw"] = start["rss_bytes"] / raw
    for key in ("rows_over_raw", "rows_v1_over_raw"):
        if key in rows:
            out[key] = float(rows[key])
    for key in ("acks_per_second", "sqlite_commits_per_second", "sqlite_1_thread_commits_per_second",
                "sqlite_n_threads_commits_per_second"):
        if key in adm:
            out[key] = float(adm[key])
    if adm.get("acks_per_second") and adm.get("sqlite_commits_per_second"):
        out["acks_over_sqlite"] = adm["acks_per_second"] / adm["sqlite_commits_per_second"]
    detail = adm.get("detail") or {}  # the transport's ceiling: empty calls to the daemon's own gRPC server
    empty = (detail.get("empty_calls_per_s") or {}).get(str(detail.get("clients")))
    if empty:
        out["empty_calls_per_second"] = float(empty)
        if adm.get("acks_per_second"):
            out["acks_over_empty_calls"] = adm["acks_per_second"] / empty
    return out


def judge(figures: dict[str, float], targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    """Each target met or missed by `figures` (one size's `flat`); not measured when the figure is absent."""
    out = []
    for t in targets:
        value = figures.get(t.key)
        met = None if value is None else (value <= t.target if t.op == "<=" else value >= t.target)
        out.append(Verdict(t.key, t.label, value, t.op, t.target, t.before, met, t.unit))
    return out


def growth(small: dict[str, float], large: dict[str, float]) -> list[Verdict]:
    """Each GROWN figure's ratio large / small, judged against GROWTH_SLACK x the data's ratio."""
    allowed = GROWTH_SLACK * large["n"] / small["n"]
    out = []
    for key in GROWN:
        a, b = small.get(key), large.get(key)
        ratio = b / a if a and b is not None else None
        out.append(Verdict(f"growth:{key}", f"growth of {key}", ratio, "<=", allowed, None,
                           None if ratio is None else ratio <= allowed))
    return out


def verdicts(runs: list[dict[str, Any]]) -> tuple[list[Verdict], list[Verdict]]:
    """(targets judged at the largest size, growth from the size nearest half of it to the largest)."""
    sized = sorted(runs, key=lambda r: r["n"])
    large = flat(sized[-1])
    if len(sized) < 2:
        return judge(large), []
    small = min(sized[:-1], key=lambda r: abs(r["n"] - sized[-1]["n"] / 2))
    return judge(large), growth(flat(small), large)


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B":
        return f"{value / 2**20:,.1f} MiB" if value >= 2**20 else f"{value / 2**10:,.0f} KiB"
    return f"{value:,.0f}{unit}" if abs(value) >= 1000 else f"{value:.4g}{unit}"


def format_verdicts(targets: list[Verdict], grown: list[Verdict]) -> str:
    lines = []
    for v in targets:
        before = "" if v.before is None else f", before {_num(v.before, v.unit)}"
        lines.append(f"{v.word:>12}: {v.label}: {_num(v.value, v.unit)} (target {v.op} {_num(v.target, v.unit)}{before})")
    for v in grown:
        lines.append(f"{v.word:>12}: {v.label}: {_num(v.value, 'x')} (target {v.op} {v.target:.3g}x)")
    return "\n".join(lines)


def format_markdown(results: dict[str, Any]) -> str:
    """results.md: the config, the targets table, every figure at every size, the in-run baselines."""
    runs = sorted(results["runs"], key=lambda r: r["n"])
    figs = [flat(r) for r in runs]
    heads = " | ".join(f"n = {int(f['n']):,}" for f in figs)
    c = results["config"]
    out = [f"# forgetd bench scale\n\n{c['description']}\n",
           f"| target | {heads} | target | before | met |", "|---|" + "---|" * (len(figs) + 3)]
    for v in results["verdicts"]:
        cells = " | ".join(_num(f.get(v["key"]), v["unit"]) for f in figs)
        before = "-" if v["before"] is None else _num(v["before"], v["unit"])
        word = Verdict(**v).word
        out.append(f"| {v['label']} | {cells} | {v['op']} {_num(v['target'], v['unit'])} | {before} | **{word}** |")
    out += ["", f"| figure | {heads} | growth | allowed | met |", "|---|" + "---|" * (len(figs) + 3)]
    for g in results["growth"]:
        key = g["key"].split(":", 1)[1]
        unit = "B" if key.endswith("_bytes") else ""
        cells = " | ".join(_num(f.get(key), unit) for f in figs)
        out.append(f"| {key} | {cells} | {_num(g['value'], 'x')} | {g['op']} {g['target']:.3g}x | {Verdict(**g).word} |")
    out += ["", f"| in-run baseline | {heads} |", "|---|" + "---|" * len(figs)]
    for key, label in (("engine_us_per_sample", "forgetd training (the whole Engine.train build), us per sample read"),
                       ("engine_loop_us_per_sample", "forgetd's training loop alone, us per sample read"),
                       ("cpu_over_recording", "forgetd build / bare recording loop, in CPU seconds"),
                       ("recording_us_per_sample", "bare torch loop recording increments, us per sample"),
                       ("bare_us_per_sample", "bare torch loop recording nothing, us per sample"),
                       ("rows_over_raw", "row store (block format) / raw features"),
                       ("rows_v1_over_raw", "row store in the one-record-a-row format before it / raw features"),
                       ("acks_per_second", "acknowledged Forgets/s, 8 clients (measured once, own store)"),
                       ("sqlite_1_thread_commits_per_second", "raw SQLite single commits/s (WAL, synchronous=FULL), 1 thread"),
                       ("sqlite_n_threads_commits_per_second", "raw SQLite single commits/s, 8 threads"),
                       ("empty_calls_per_second", "empty gRPC calls/s (health Check, same server), 8 clients"),
                       ("acks_over_empty_calls", "acknowledged Forgets / empty gRPC calls, 8 clients"),
                       ("hwm_bytes", "daemon peak resident memory (VmHWM)")):
        out.append(f"| {label} | " + " | ".join(_num(f.get(key), "B" if key.endswith("bytes") else "") for f in figs) + " |")
    failed = [f"- n = {r['n']:,}, {name}: {part['error']}" for r in runs for name, part in r.items()
              if isinstance(part, dict) and "error" in part]
    if failed:
        out += ["", "Parts that failed (their figures read as not measured):", *failed]
    return "\n".join(out) + "\n"


def verdict_dicts(items: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in items]
