"""Training data: the `Dataset` type and its loaders (UCI Adult, CSV, NPZ, and a synthetic demo set).

Every sample carries a stable string id, because forget requests name samples by id. Loaders are strict:
a malformed file is a `DataError` that names the file, the row and the column, and nothing is returned.

    from forgetd.server.data import load_dataset
    ds = load_dataset("adult", "PATH/TO/adult")  # the folder holding adult.data and adult.test
    ds = load_dataset("csv", "people.csv", id_column="user", label_column="churned")
    ds = load_dataset("synthetic", n=2000, seed=0)

Where things are: dataset.py (the type, its digest, the keyed split), encoder.py (the feature encoder: raw
rows -> features, fitted by the Adult and CSV loaders, kept in the store and used again to serve raw
records), one module per kind (adult.py, tabular_csv.py, npz.py, synthetic.py, and purchase.py, census.py,
olympics.py for the hybrid paper's other data sets), registry.py
(`load_dataset`), spec.py (the `KIND:PATH` string the commands take).

The names load lazily, so a command's help can read spec.py on an install without numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forgetd.server.data.dataset import Dataset, hash_rows, split_is_test
    from forgetd.server.data.registry import KINDS, load_dataset
    from forgetd.server.data.spec import DATA_KINDS, DATA_SPEC_HELP, parse_data_spec

_LAZY = {
    "Dataset": "forgetd.server.data.dataset",
    "hash_rows": "forgetd.server.data.dataset",
    "split_is_test": "forgetd.server.data.dataset",
    "KINDS": "forgetd.server.data.registry",
    "load_dataset": "forgetd.server.data.registry",
    "DATA_KINDS": "forgetd.server.data.spec",
    "DATA_SPEC_HELP": "forgetd.server.data.spec",
    "parse_data_spec": "forgetd.server.data.spec",
}

__all__ = ["Dataset", "load_dataset", "split_is_test", "hash_rows", "KINDS", "DATA_KINDS", "DATA_SPEC_HELP",
           "parse_data_spec"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'forgetd.server.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
