"""`forgetd bench`: measurements of forgetd itself. Each subcommand lives with its library and is added here."""

from __future__ import annotations

import click

from forgetd.client.audit_bench import audit_command  # the auditor lives in client/; wiring only

from .bench_serving import serving
from .bench_unlearning import unlearning


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def bench() -> None:
    """Benchmarks: serving (gRPC overhead, Forget latency) and unlearning (the paper's evaluation)."""


bench.add_command(serving)
bench.add_command(unlearning)
bench.add_command(audit_command)
