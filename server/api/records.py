"""Raw records in each front's terms: what a Predict names by column instead of sending encoded features.

Every front hands the cells it received to the store's one FeatureEncoder (forgetd.server.data.encoder),
the code that encoded the training rows, so a raw row is answered bitwise as its encoded features are:

- forgetd.v1: `PredictRequest.records`, each a map of column name -> RecordValue (number or text);
- the Open Inference Protocol (gRPC and REST alike): one input tensor per column, named after it, in the
  style of MLServer's pandas codec: BYTES for a categorical column (UTF-8 text), FP32, FP64 or an integer
  type for a numeric one (a numeric column also takes BYTES holding its decimal text), shape [rows] or
  [rows, 1].

Errors are InvalidRequest naming the row, the column and the value, so every front answers them with its
"fix the request" status (INVALID_ARGUMENT, HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from forgetd.v1 import inference_service_pb2 as pb

from forgetd.server.data.encoder import NUMERIC, ZEROS, Cell, FeatureEncoder, listing as _listing
from forgetd.server.errors import InvalidRequest

__all__ = ["encode_v1_records", "encode_tensor_columns", "input_schema_proto", "column_datatype"]

_KIND = {NUMERIC: pb.COLUMN_KIND_NUMERIC}
_CATEGORICAL = pb.COLUMN_KIND_CATEGORICAL


def encode_v1_records(request: pb.PredictRequest, encoder: FeatureEncoder, max_rows: int) -> tuple[bytes, int]:
    """(rows x F little-endian float32 bytes, rows) of a PredictRequest's `records` (the caller checked
    there are some); InvalidRequest when the request mixes both forms or a record cannot be encoded."""
    if request.features or request.rows or request.columns:
        raise InvalidRequest("the request has both records and features/rows/columns; send raw records or "
                             "encoded features, not both")
    rows = len(request.records)
    if rows > max_rows:
        raise InvalidRequest(f"records has {rows} rows, above this server's limit of {max_rows}; split the batch")
    cells = [{name: _record_cell(i, name, value) for name, value in rec.fields.items()}
             for i, rec in enumerate(request.records)]
    return encoder.encode_records(cells).astype("<f4", copy=False).tobytes(), rows


def _record_cell(row: int, column: str, value: pb.RecordValue) -> Cell:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidRequest(f"row {row}, column {column!r}: the value is empty; set its number or its text")
    cell: Cell = getattr(value, kind)
    return cell


def encode_tensor_columns(inputs: Mapping[str, np.ndarray], encoder: FeatureEncoder, max_rows: int) -> np.ndarray:
    """(rows, F) float32 of OIP inputs that name the schema's columns, one tensor each."""
    names = encoder.column_names
    stray = [n for n in inputs if n not in names]
    if stray:
        raise InvalidRequest(f"input {stray[0]!r} is not an input of the model; send exactly one input "
                             f"'features' (FP32 [rows, {encoder.num_features}]), or one tensor per column of "
                             f"the model ({_listing(names)}) without 'features'")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise InvalidRequest(f"input {missing[0]!r} is missing; a request by columns sends every column of the "
                             f"model ({_listing(names)})")
    columns = [_tensor_cells(n, inputs[n]) for n in names]
    rows = len(columns[0])
    if not 1 <= rows <= max_rows:
        raise InvalidRequest(f"input {names[0]!r} has {rows} rows; send 1 to {max_rows} rows")
    for n, col in zip(names, columns):
        if len(col) != rows:
            raise InvalidRequest(f"input {n!r} has {len(col)} rows but input {names[0]!r} has {rows}; send "
                                 "every column for the same rows")
    return encoder.encode_columns(columns, rows).astype("<f4", copy=False)  # the wire order


def _tensor_cells(name: str, x: np.ndarray) -> Sequence[Cell]:
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise InvalidRequest(f"input {name!r} has shape {list(x.shape)}; a column tensor is [rows] or [rows, 1]")
    if x.dtype == object:  # BYTES
        try:
            return [v.decode("utf-8") for v in x.tolist()]
        except UnicodeDecodeError:
            raise InvalidRequest(f"input {name!r}: a BYTES element is not UTF-8 text") from None
    if x.dtype.kind not in "fiu":
        raise InvalidRequest(f"input {name!r} is {x.dtype}; send BYTES for a categorical column, FP32, FP64 or "
                             "an integer type for a numeric one")
    return [float(v) for v in x.astype(np.float64).tolist()]  # FP32 widens exactly


def column_datatype(encoder: FeatureEncoder, name: str) -> str:
    """The datatype a column tensor is described with: FP64 (numeric) or BYTES (categorical)."""
    column = next(c for c in encoder.columns if c.name == name)
    return "FP64" if column.kind == NUMERIC else "BYTES"


def input_schema_proto(encoder: FeatureEncoder) -> pb.InputSchema:
    """GetModelResponse.input_schema: the columns, their encodings and the artifact's digest."""
    columns = [
        pb.InputColumn(name=c.name, kind=_KIND.get(c.kind, _CATEGORICAL), mean=c.mean if c.kind == NUMERIC else 0.0,
                       scale=c.scale if c.kind == NUMERIC else 0.0, categories=list(c.categories), feature_offset=at)
        for c, at in zip(encoder.columns, encoder.offsets())
    ]
    policy = pb.UNKNOWN_CATEGORY_POLICY_ZEROS if encoder.unknown_category == ZEROS else pb.UNKNOWN_CATEGORY_POLICY_ERROR
    return pb.InputSchema(columns=columns, unknown_category=policy, encoder_digest=encoder.digest())
