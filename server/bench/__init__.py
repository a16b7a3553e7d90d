"""Benchmarks that print figures beside a baseline: serving, unlearning (with membership inference), plots.

unlearning.py runs the hybrid-unlearning paper's evaluation (measure.py times and attacks each strategy,
mia.py holds the attacks, report.py reads the numbers against the paper's claims, plots.py draws them);
serving.py measures the daemon against a bare gRPC echo; reliability.py counts what SIGKILLs, tampering and
bad inputs do (crashes.py, tamper.py, bad_inputs.py, through the `forgetd` command: processes.py).
"""

from __future__ import annotations

from forgetd.server.vocabulary import DPUS, HS, OHS, RETRAIN, SISA

__all__ = ["BENCH_STRATEGIES"]

# Every concrete strategy, cheapest first, so a long run's partial results already hold the fast ones.
BENCH_STRATEGIES = (DPUS, HS, OHS, SISA, RETRAIN)
