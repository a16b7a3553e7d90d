"""`forgetd bench reliability` (wired into `forgetd bench` by client/cli/main.py): what the product promises
when things go wrong, counted. Figures, not a test (the tests hold each promise on its own):

1. crashes (crashes.py): daemons SIGKILLed at random moments while Forgets stream in; acknowledged Forgets
   lost after the restarts (must be 0), not applied, applied twice;
2. tampering (tamper.py): copies of a served store changed behind forgetd's back; how many `forgetd verify`
   catches and names, out of those tried;
3. bad inputs (bad_inputs.py): malformed requests to a running daemon; how many get the status that names
   their fault, with a message, and how many ledger entries they wrote (must be 0).

Everything runs on a freshly trained small synthetic store in a temporary folder, through the `forgetd`
command in subprocesses (processes.py), so what is counted is what an operator and an auditor get.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from forgetd.server.bench.bad_inputs import DAEMON_FLAGS, InputResult, run_bad_inputs
from forgetd.server.bench.crashes import CrashFigures, run_crash_rounds
from forgetd.server.bench.processes import DaemonProcess, run_forgetd
from forgetd.server.bench.tamper import TamperResult, run_tamper_cases

__all__ = ["ReliabilityFigures", "reliability", "run_reliability_bench"]

_ROWS = 300  # the synthetic store: 4 slices, 2 epochs, 16-wide layers; trains in about a second
_FORGETS_FOR_AUDIT = ("dpus", "sisa", "hs", "ohs", "retrain", "auto")


@dataclass(frozen=True)
class ReliabilityFigures:
    crashes: CrashFigures
    tamper_control_verifies: bool  # the untampered store verifies (or no case could count)
    tamper: tuple[TamperResult, ...]
    inputs: tuple[InputResult, ...]
    inputs_ledger_writes: int
    seconds: float


def _train(store: Path) -> list[str]:
    """Train the small store; its training ids, in order."""
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    config = EngineConfig(slices=4, epochs=2, hidden_sizes=(16, 16), batch_size=32, seed=0, device="cpu")
    with Engine.train(load_dataset("synthetic", n=_ROWS, seed=0), config, store) as engine:
        return engine.sample_ids()


def _served_with_receipt(store: Path, ids: list[str], work: Path) -> Path:
    """Forget one id per strategy through a daemon with `forgetd forget --json`; the last receipt's file."""
    daemon = DaemonProcess.start(store)
    receipt = work / "receipt.json"
    try:
        for sample, strategy in zip(ids, _FORGETS_FOR_AUDIT):
            done = run_forgetd(["forget", sample, "--strategy", strategy, "--json", "--server", daemon.address])
            if done.returncode != 0:
                raise click.ClickException(f"forgetd forget failed: {done.stderr.strip()}")
            receipt.write_text(done.stdout)
    finally:
        daemon.stop()
    return receipt


def run_reliability_bench(rounds: int, seed: int, work: Path, progress: bool = True) -> ReliabilityFigures:
    started = time.perf_counter()
    say = (lambda m: click.echo(m, err=True)) if progress else (lambda m: None)
    ids = _train(work / "trained")
    say(f"crashes: {rounds} SIGKILL rounds")
    shutil.copytree(work / "trained", work / "crashes")
    crashes = run_crash_rounds(work / "crashes", ids[len(_FORGETS_FOR_AUDIT):], rounds, seed)
    say("tampering: a served store, then each case on its own copy, checked by forgetd verify")
    shutil.copytree(work / "trained", work / "audited")
    receipt = _served_with_receipt(work / "audited", ids, work)
    control, tamper = run_tamper_cases(work / "audited", receipt, ids[0], work)
    say("bad inputs: malformed requests to a running daemon")
    shutil.copytree(work / "trained", work / "inputs")
    daemon = DaemonProcess.start(work / "inputs", *DAEMON_FLAGS)
    try:
        inputs, writes = run_bad_inputs(daemon.address, work / "inputs", _num_features(work / "trained"), ids)
    finally:
        daemon.stop()
    return ReliabilityFigures(crashes, control, tuple(tamper), tuple(inputs), writes, time.perf_counter() - started)


def _num_features(store: Path) -> int:
    return int(json.loads((store / "store.json").read_text())["num_features"])


def format_figures(f: ReliabilityFigures) -> str:
    c = f.crashes
    caught = sum(t.caught for t in f.tamper)
    clear = sum(i.clear for i in f.inputs)
    lines = [
        f"forgetd bench reliability ({f.seconds:.0f} s)",
        "",
        f"crashes      {c.rounds} SIGKILL rounds, {c.acknowledged} Forgets acknowledged: {c.lost} lost, "
        f"{c.not_applied} not applied, {c.applied_twice} applied twice ({c.recovered} batches recorded at restart "
        f"from the store's tag; {c.seconds:.0f} s)",
        f"tampering    {caught} of {len(f.tamper)} caught and named by forgetd verify"
        + ("" if f.tamper_control_verifies else " (THE UNTAMPERED STORE DID NOT VERIFY)"),
    ]
    lines += [f"  {'caught' if t.caught else 'MISSED'}  {t.case}: {t.check + ': ' if t.check else ''}{t.finding}"
              for t in f.tamper]
    lines.append(f"bad inputs   {clear} of {len(f.inputs)} answered with the status that names the fault; "
                 f"ledger entries written: {f.inputs_ledger_writes}")
    lines += [f"  {'ok' if i.clear else 'UNCLEAR'}  {i.case}: {i.got}"
              + ("" if i.clear else f" (expected {i.expected})") + f": {i.message}" for i in f.inputs]
    return "\n".join(lines)


@click.command("reliability", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True, help="SIGKILL rounds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the kill moments and strategies.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def reliability(rounds: int, seed: int, as_json: bool) -> None:
    """Crashes (SIGKILL rounds: acknowledged Forgets lost), tampering (cases forgetd verify catches) and bad
    inputs (requests answered with a clear status), on a fresh small store; a few minutes."""
    with tempfile.TemporaryDirectory(prefix="forgetd-reliability-") as tmp:
        figures = run_reliability_bench(rounds, seed, Path(tmp), progress=not as_json)
    click.echo(json.dumps(asdict(figures), indent=2) if as_json else format_figures(figures))
