"""`load_dataset`: each data kind (spec.DATA_KINDS) mapped onto its loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from forgetd.server.data.adult import load_adult
from forgetd.server.data.census import load_census
from forgetd.server.data.dataset import Dataset
from forgetd.server.data.npz import load_npz
from forgetd.server.data.olympics import load_olympics
from forgetd.server.data.purchase import load_purchase
from forgetd.server.data.synthetic import load_synthetic
from forgetd.server.data.tabular_csv import load_csv
from forgetd.server.errors import DataError

__all__ = ["KINDS", "load_dataset"]

# Each loader takes the path (None for synthetic) and its own keyword options, and checks both itself.
KINDS: dict[str, Callable[..., Dataset]] = {
    "adult": load_adult,
    "csv": load_csv,
    "npz": load_npz,
    "synthetic": load_synthetic,
    "purchase": load_purchase,
    "census": load_census,
    "olympics": load_olympics,
}


def load_dataset(kind: str, path: str | Path | None = None, **options: object) -> Dataset:
    """Load a data set of the given kind: "adult" (a folder), "csv" or "npz" (a file), or "synthetic" (no path).

    Options: adult takes unknown_category="error" (or "zeros": what the served model does with a category the
    training data lacks); csv takes id_column, label_column, test_fraction=0.2, seed=0, categorical_columns=(),
    unknown_category="error";
    npz takes test_fraction=0.2, seed=0 (used only without test arrays), num_classes=None;
    synthetic takes n=2000, seed=0, features=16, classes=2, test_fraction=0.2, noise=0.5;
    the hybrid paper's other sets: "purchase" (Purchase-100's .npz) takes test_fraction=0.2, seed=0;
    "census" (a folder holding census-income.data and .test) takes unknown_category="error";
    "olympics" (athlete_events.csv) takes missing="drop" (or "mean"), test_fraction=0.2, seed=0,
    unknown_category="error".
    """
    loader = KINDS.get(kind)
    if loader is None:
        raise DataError(f"unknown data kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
    return loader(path, **options)

