"""Click parameter types the server's commands share, each checked by the vocabulary's own rule."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from forgetd.server.errors import InvalidConfig
from forgetd.server.executors import ExecutorSpec, make_executor
from forgetd.server.vocabulary import DEVICES, EXECUTORS, INLINE_EXECUTOR, check_device

__all__ = ["DEVICE", "executor_options"]


class _Device(click.ParamType):
    """A device name as `vocabulary.check_device` accepts it (auto, cpu, cuda, cuda:N); a usage error otherwise."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[" + "|".join(DEVICES) + "[:N]]"  # [auto|cpu|cuda[:N]]: cuda comes last in DEVICES

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_device(str(value))
        except InvalidConfig as exc:
            self.fail(str(exc), param, ctx)


DEVICE = _Device()


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--executor, --executor-workers and --ray-address, given to `command` as one ExecutorSpec `executor`; a
    usage error (Ray missing included) before the command runs. Put it right above the function."""

    @functools.wraps(command)
    def with_executor(*args: Any, executor_kind: str, executor_workers: int | None, ray_address: str | None,
                      **kwargs: Any) -> Any:
        try:
            spec = ExecutorSpec(executor_kind, executor_workers, ray_address)
            make_executor(spec).close()  # starts nothing; refuses a missing Ray now rather than mid-run
        except InvalidConfig as exc:
            raise click.UsageError(str(exc)) from None
        return command(*args, executor=spec, **kwargs)

    options = [
        click.option("--executor", "executor_kind", type=click.Choice(EXECUTORS), default=INLINE_EXECUTOR,
                     show_default=True, help="Where per-shard work runs: inline (one shard after another), process "
                     "(a local pool of processes) or ray (Ray tasks). The digests are the same under each."),
        click.option("--executor-workers", type=click.IntRange(min=1), metavar="N",
                     help="process: pool size; ray: CPUs of the local Ray started for the run. Default: one per core."),
        click.option("--ray-address", metavar="ADDRESS",
                     help="ray: the cluster to run on (e.g. auto, ray://head:10001); default: start a local Ray."),
    ]
    for option in reversed(options):
        with_executor = option(with_executor)
    return with_executor
