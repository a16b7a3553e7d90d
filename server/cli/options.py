"""Click parameter types the server's commands share, each checked by the vocabulary's own rule."""

from __future__ import annotations

import click

from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import DEVICES, check_device

__all__ = ["DEVICE"]


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
