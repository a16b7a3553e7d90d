"""Raw records: the model's input schema as the client sees it, records for Predict, and raw CSV files.

A daemon takes rows as they are in the training data (a record per row: column name -> number or text) and
encodes them itself, with the encoder fitted when the model was trained (GetModel's `input_schema`), so a
raw row is answered bitwise as its encoded features. `Client.predict_records` sends them; `read_csv`
turns a raw data file into them, the way `forgetd predict --csv` reads one (it takes a file as raw rows when
its first row of data holds text, as Adult's do, or when told: `--raw`, `--columns`):

- a header line naming the model's columns, in any order, or `columns` given, or neither: then the
  columns are the model's, in schema order;
- a column the model does not take (an id, the label) is left out; without a header, a row with exactly one
  field more than the columns has that last field dropped as its label (Adult's files end with `income`);
- blank lines, and lines starting with `|` (the comment that opens Adult's adult.test), are skipped;
- every value goes as the text in the file, which the daemon reads as training read it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import numbers
from collections.abc import Mapping, Sequence

from forgetd.client.errors import InvalidRows
from forgetd.v1 import inference_service_pb2, unlearning_service_pb2

__all__ = ["NUMERIC", "CATEGORICAL", "InputColumn", "InputSchema", "EncoderResidue", "Record", "records_proto",
           "read_csv", "holds_text"]

NUMERIC, CATEGORICAL = "numeric", "categorical"
_KINDS = {inference_service_pb2.COLUMN_KIND_NUMERIC: NUMERIC,
          inference_service_pb2.COLUMN_KIND_CATEGORICAL: CATEGORICAL}
_POLICIES = {inference_service_pb2.UNKNOWN_CATEGORY_POLICY_ERROR: "error",
             inference_service_pb2.UNKNOWN_CATEGORY_POLICY_ZEROS: "zeros"}

Record = Mapping[str, "float | int | str"]  # column name -> a number, or text as in the data file


@dataclasses.dataclass(frozen=True)
class InputColumn:
    """One raw column: numeric (feature = (x - mean) / scale) or categorical (one-hot over `categories`)."""

    name: str
    kind: str  # "numeric" | "categorical"
    mean: float  # numeric only
    scale: float  # numeric only
    categories: tuple[str, ...]  # categorical only, in feature order
    feature_offset: int  # the first model feature the column fills


@dataclasses.dataclass(frozen=True)
class InputSchema:
    """The raw rows a model takes (GetModel's input_schema); fixed at training, never refitted."""

    columns: tuple[InputColumn, ...]
    unknown_category: str  # "error" (refused) or "zeros"
    encoder_digest: str  # hex SHA-256 of the store's encoder artifact, as genesis commits it

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @classmethod
    def from_proto(cls, msg: inference_service_pb2.InputSchema) -> InputSchema:
        return cls(tuple(InputColumn(c.name, _KINDS.get(c.kind, "unspecified"), c.mean, c.scale,
                                     tuple(c.categories), c.feature_offset) for c in msg.columns),
                   _POLICIES.get(msg.unknown_category, "unspecified"), msg.encoder_digest)


@dataclasses.dataclass(frozen=True)
class EncoderResidue:
    """A category a forget left without any training row: it stays in the model's input schema."""

    column: str
    category: str
    feature: int

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.EncoderResidue) -> EncoderResidue:
        return cls(msg.column, msg.category, msg.feature)


def records_proto(records: Sequence[Record]) -> list[inference_service_pb2.Record]:
    """PredictRequest.records of plain records; InvalidRows names a value that is neither text nor a number."""
    if isinstance(records, Mapping):
        raise InvalidRows("records must be a list of records (column -> value), not one record")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InvalidRows(f"record {i} is {type(rec).__name__}; give a mapping of column name -> value")
        msg = inference_service_pb2.Record()
        for name, value in rec.items():
            if isinstance(value, str):
                msg.fields[str(name)].text = value
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                msg.fields[str(name)].number = float(value)
            else:
                raise InvalidRows(f"record {i}, column {name!r}: {value!r} is neither text nor a number")
        out.append(msg)
    return out


def read_csv(text: str, name: str, schema: InputSchema, columns: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The records of a raw CSV file's `text` (the rules in the module docstring); InvalidRows names the line."""
    lines = [(n, cells) for n, cells in enumerate(csv.reader(io.StringIO(text.removeprefix("\ufeff"))), start=1)
             if cells and any(c.strip() for c in cells) and not cells[0].lstrip().startswith("|")]
    wanted = set(schema.column_names)
    header: list[str] | None = list(columns) if columns is not None else None
    if header is None and lines and wanted <= {c.strip() for c in lines[0][1]}:
        header = [c.strip() for c in lines[0][1]]
        lines = lines[1:]
    if header is not None:
        missing = [c for c in schema.column_names if c not in header]
        if missing:
            raise InvalidRows(f"{name}: no column {missing[0]!r}; the model's columns are "
                              + ", ".join(schema.column_names))
    names, labelled = header or list(schema.column_names), header is None
    records = []
    for line_no, cells in lines:
        if labelled and len(cells) == len(names) + 1:
            cells = cells[:-1]  # a headerless file's trailing label (Adult's `income`)
        if len(cells) != len(names):
            raise InvalidRows(f"{name} line {line_no}: {len(cells)} fields, expected {len(names)} ("
                              + ", ".join(names) + (", and optionally a trailing label" if labelled else "") + ")")
        records.append({k: v.strip() for k, v in zip(names, cells) if k in wanted})
    if not records:
        raise InvalidRows(f"{name}: no rows")
    return records


def holds_text(text: str) -> bool:
    """Whether a CSV file's first row of data (after a header, a line with no number) holds a cell that is not
    a number: raw rows, which only the model's encoder can turn into features."""
    rows = (cells for cells in csv.reader(io.StringIO(text.removeprefix("\ufeff")))
            if cells and any(c.strip() for c in cells) and not cells[0].lstrip().startswith("|"))
    for i, cells in enumerate(rows):
        numbers_ = [_is_number(c) for c in cells]
        if i == 0 and not any(numbers_):
            continue  # a header
        return not all(numbers_)
    return False


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
