"""The forgetd client: `Client` talks to a daemon; every failure is a ForgetdClientError subclass.

    from forgetd.client import Client, NotFound

    with Client("127.0.0.1:50051", token=token) as client:
        receipt = client.forget(["sample-17"], strategy="auto")
        print(receipt.result.model_version)
"""

from forgetd.client.client import Client, TlsConfig
from forgetd.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    ForgetdClientError,
    Internal,
    InvalidArgument,
    InvalidRows,
    InvalidStrategy,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    from_grpc_error,
)
from forgetd.client.types import (
    STRATEGIES,
    ForgetResult,
    ForgetStatus,
    HeadProofs,
    LedgerEntry,
    ModelInfo,
    Prediction,
    Receipt,
    SampleOutcome,
)

__all__ = [
    "STRATEGIES",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "ForgetResult",
    "ForgetStatus",
    "ForgetdClientError",
    "HeadProofs",
    "Internal",
    "InvalidArgument",
    "InvalidRows",
    "InvalidStrategy",
    "LedgerEntry",
    "ModelInfo",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "Prediction",
    "Receipt",
    "ResourceExhausted",
    "SampleOutcome",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "from_grpc_error",
]
