"""A data set named in one string, as the commands take it: `KIND:PATH`, or `synthetic` alone.

Needs neither numpy nor torch, so every command's help still works on a client-only install.
"""

from __future__ import annotations

from forgetd.server.errors import DataError

__all__ = ["DATA_KINDS", "DATA_SPEC_HELP", "parse_data_spec"]

DATA_KINDS = ("adult", "csv", "npz", "synthetic")  # what load_dataset loads (registry.KINDS: each one's loader)
DATA_SPEC_HELP = "adult:DIR, csv:PATH, npz:PATH or synthetic"


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """("adult", "DIR") from "adult:DIR"; ("synthetic", None) from "synthetic"; DataError for anything else."""
    kind, _, path = spec.partition(":")
    if kind == "synthetic" and not path:
        return kind, None
    if kind in DATA_KINDS and kind != "synthetic" and path:
        return kind, path
    raise DataError(f"data is {spec!r}; give {DATA_SPEC_HELP}")
