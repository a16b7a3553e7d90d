"""Training data: the `Dataset` type and its loaders (UCI Adult, CSV, NPZ, a synthetic demo set)."""

from forgetd.server.data.loaders import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
