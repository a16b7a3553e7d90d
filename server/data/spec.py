"""A data set named in one string, as the commands take it: `KIND:PATH`, or `synthetic` alone.

Needs neither numpy nor torch, so every command's help still works on a client-only install.
"""

from __future__ import annotations

from forgetd.server.errors import DataError

__all__ = ["DATA_KINDS", "DATA_SPEC_HELP", "ID_SCHEMES", "parse_data_spec"]

# What load_dataset loads (registry.KINDS: each one's loader).
DATA_KINDS = ("adult", "csv", "npz", "synthetic", "purchase", "census", "olympics")
DATA_SPEC_HELP = "adult:DIR, csv:PATH, npz:PATH, purchase:NPZ, census:DIR, olympics:CSV or synthetic"

# How each loader names its samples: the ids `forgetd forget` takes. Only training rows can be forgotten; a
# test-split id is answered NOT_FOUND like one that never existed. (`forgetd train --help` prints these; the
# README's "Sample ids" section says the same.)
ID_SCHEMES: dict[str, str] = {
    "adult": "adult.data:<line>, the row's 1-based line number in adult.data (the first row is adult.data:1); "
             "adult.test rows are the test split",
    "csv": "the row's value in --id-column, exactly as written; the keyed-hash test split (a fifth of the rows) "
           "holds some ids, which are not training rows",
    "npz": "the strings of the file's `ids` array (`test_ids` are the test split; without them a keyed-hash "
           "split takes a fifth of `ids`)",
    "synthetic": "synthetic:<n>, n from 0 to --rows - 1 (the test rows come after: synthetic:<rows> on)",
    "purchase": "purchase:<row>, the row's 0-based position in the file's arrays; a keyed-hash test split holds "
                "about a fifth of them",
    "census": "census-income.data:<line>, the row's 1-based line number in census-income.data; "
              "census-income.test rows are the test split",
    "olympics": "<ID>:<Games>:<Event> of the row (e.g. 1:1992 Summer:Basketball Men's Basketball; #2, #3... "
                "on an entry the file repeats); a keyed-hash test split holds about a fifth of them",
}


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """("adult", "DIR") from "adult:DIR"; ("synthetic", None) from "synthetic"; DataError for anything else."""
    kind, _, path = spec.partition(":")
    if kind == "synthetic" and not path:
        return kind, None
    if kind in DATA_KINDS and kind != "synthetic" and path:
        return kind, path
    raise DataError(f"data is {spec!r}; give {DATA_SPEC_HELP}")
