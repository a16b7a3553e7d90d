from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[Strategy]
    STRATEGY_AUTO: _ClassVar[Strategy]
    STRATEGY_RETRAIN: _ClassVar[Strategy]
    STRATEGY_SISA: _ClassVar[Strategy]
    STRATEGY_DPUS: _ClassVar[Strategy]
    STRATEGY_HS: _ClassVar[Strategy]
    STRATEGY_OHS: _ClassVar[Strategy]
    STRATEGY_INFLUENCE: _ClassVar[Strategy]
    STRATEGY_CERTIFIED: _ClassVar[Strategy]

class Guarantee(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARANTEE_UNSPECIFIED: _ClassVar[Guarantee]
    GUARANTEE_EXACT: _ClassVar[Guarantee]
    GUARANTEE_APPROXIMATE: _ClassVar[Guarantee]
    GUARANTEE_CERTIFIED: _ClassVar[Guarantee]
STRATEGY_UNSPECIFIED: Strategy
STRATEGY_AUTO: Strategy
STRATEGY_RETRAIN: Strategy
STRATEGY_SISA: Strategy
STRATEGY_DPUS: Strategy
STRATEGY_HS: Strategy
STRATEGY_OHS: Strategy
STRATEGY_INFLUENCE: Strategy
STRATEGY_CERTIFIED: Strategy
GUARANTEE_UNSPECIFIED: Guarantee
GUARANTEE_EXACT: Guarantee
GUARANTEE_APPROXIMATE: Guarantee
GUARANTEE_CERTIFIED: Guarantee

class LedgerHead(_message.Message):
    __slots__ = ("size", "chain_hash", "merkle_root", "signature", "public_key", "checkpoint")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HASH_FIELD_NUMBER: _ClassVar[int]
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    size: int
    chain_hash: bytes
    merkle_root: bytes
    signature: bytes
    public_key: bytes
    checkpoint: str
    def __init__(self, size: _Optional[int] = ..., chain_hash: _Optional[bytes] = ..., merkle_root: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("seq", "tree_size", "hashes")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, seq: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("old_size", "new_size", "hashes")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...
