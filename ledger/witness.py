"""c2sp.org/tlog-witness: cosign a log's checkpoints only while they stay consistent, and ask a witness to.

    Witness(state_path, signing_key, logs={origin: verifier}).add_checkpoint(body) -> (status, headers, body)

`add_checkpoint` is the whole protocol, without HTTP (witness_server.py serves it with Starlette and
uvicorn). The request body is `old <size>`, the consistency proof (one base64 hash a line, at most 63), an
empty line, then the log's signed checkpoint. The answers, in the order the spec checks them:

    400  a malformed body or checkpoint, or an old size above the checkpoint's size
    404  no log with the checkpoint's origin is configured
    403  no valid signature by the log's key (a bad signature by it is refused the same way)
    409  the old size is not the size last cosigned; the body (`text/x.tlog.size`) is that size and a newline
    422  a size-0 checkpoint without the empty root, a proof after old size 0, or a proof that fails
    200  the cosignature line: c2sp.org/tlog-cosignature's `cosignature/v1`, timestamped Ed25519

State: one SQLite file with, per origin, the size, root and checkpoint last cosigned. The check of the old
size and the write of the new state are one BEGIN IMMEDIATE transaction, committed before the cosignature
is made, so of two requests racing from the same old size one wins and the other gets 409, and a witness
that dies after the commit has moved on (the log learns the new size from the next 409).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .checkpoint import Checkpoint, parse_checkpoint
from .errors import (
    CosignatureRefused,
    InconsistentCheckpoint,
    LedgerError,
    MalformedNote,
    MalformedWitnessRequest,
    NoteError,
    NoteSignatureInvalid,
    ProofError,
    UnknownLog,
    UnverifiedNote,
    WitnessConflict,
    WitnessError,
    WitnessStateError,
    WitnessUnavailable,
)
from .merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency_proof
from .note import MAX_NOTE_SIZE, Note, NoteSignature, parse_note, parse_signature_lines, verify_note
from .note_keys import CosignatureSigner, NoteVerifier, b64decode, b64encode, parse_verifier_key, unix_now
from .signing import SigningKey, key_id

APPLICATION_ID = 0x46474C57  # "FGLW": marks the file as a forgetd witness state
STATE_FORMAT = 1
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
MAX_REQUEST_SIZE = MAX_NOTE_SIZE + 64 * 1024
TABLE_SQL = """CREATE TABLE checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    checkpoint BLOB NOT NULL
) STRICT"""

# The one table from refusals to HTTP statuses; the first matching class wins (NoteSignatureInvalid is a NoteError).
STATUSES: tuple[tuple[type[LedgerError], int], ...] = (
    (MalformedWitnessRequest, 400),
    (UnknownLog, 404),
    (NoteSignatureInvalid, 403),
    (UnverifiedNote, 403),
    (NoteError, 400),
    (WitnessConflict, 409),
    (InconsistentCheckpoint, 422),
)

LogKeys = NoteVerifier | str | Sequence[NoteVerifier | str]


class WitnessResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class AddCheckpointRequest:
    """An add-checkpoint body: the size the log believes the witness has, the proof from it, the checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}", *(b64encode(h) for h in self.proof)]
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint body (the checkpoint is kept as bytes, checked later); MalformedWitnessRequest."""
    if len(body) > MAX_REQUEST_SIZE:
        raise MalformedWitnessRequest(f"the body is over {MAX_REQUEST_SIZE} bytes")
    head, sep, checkpoint = bytes(body).partition(b"\n\n")
    if not sep:
        raise MalformedWitnessRequest("the body needs an empty line between the consistency proof and the checkpoint")
    try:
        old_line, *proof_lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise MalformedWitnessRequest("the old size and proof lines must be ASCII") from None
    size = old_line[len("old ") :]
    if not old_line.startswith("old ") or not (size == "0" or (size.isdigit() and size[0] != "0")):
        raise MalformedWitnessRequest(
            f"the first line must be 'old <size>' (decimal, no leading zeroes), got {old_line[:40]!r}")
    if int(size) >= 2**63:
        raise MalformedWitnessRequest(f"old size {size} is over 2^63-1")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedWitnessRequest(f"{len(proof_lines)} consistency proof lines, over the limit of {MAX_PROOF_LINES}")
    proof = tuple(_proof_hash(line, i) for i, line in enumerate(proof_lines))
    return AddCheckpointRequest(int(size), proof, checkpoint)


def _proof_hash(line: str, i: int) -> bytes:
    value = b64decode(line, f"consistency proof line {i + 1}", MalformedWitnessRequest)
    if len(value) != HASH_SIZE:
        raise MalformedWitnessRequest(f"consistency proof line {i + 1} is {len(value)} bytes, want {HASH_SIZE}")
    return value


def default_witness_name(public_key: bytes) -> str:
    return f"forgetd-witness/{key_id(public_key)}"


class Witness:
    """A tlog-witness for the logs in `logs`: origin -> the log's verifier or vkey string (or several, during a
    key rotation). `clock` gives the cosignatures' POSIX time; the witness's key name defaults to
    forgetd-witness/<key id>."""

    def __init__(self, state_path: str | Path, signing_key: SigningKey,
                 logs: Mapping[str, LogKeys], *, name: str | None = None,
                 clock: Callable[[], int] = unix_now, busy_timeout: float = 30.0) -> None:
        self.state_path = Path(state_path)
        self.cosigner = CosignatureSigner(name or default_witness_name(signing_key.public_key), signing_key, clock)
        self.logs = {origin: _verifiers(origin, v) for origin, v in logs.items()}
        if not self.logs:
            raise WitnessError("a witness needs at least one log: pass logs={origin: verifier}")
        self._busy_timeout = busy_timeout
        self._init_state()

    @property
    def vkey(self) -> str:
        """The witness's verifier key (type 0x04), for the logs and clients that check its cosignatures."""
        return self.cosigner.verifier().vkey

    def add_checkpoint(self, body: bytes) -> WitnessResponse:
        """Answer one add-checkpoint request; the new state is committed before the cosignature is made."""
        try:
            line = self._add(body)
        except LedgerError as exc:
            return refusal(exc)
        return WitnessResponse(200, {"Content-Type": TEXT_CONTENT_TYPE}, line.encode())

    def state(self, origin: str) -> tuple[int, bytes]:
        """(size, root hash) last cosigned for `origin`; (0, the empty root) before the first."""
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT size, root_hash FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, EMPTY_ROOT)

    def _add(self, body: bytes) -> str:
        request = parse_add_checkpoint(body)
        note = parse_note(request.checkpoint)
        checkpoint = parse_checkpoint(note.text)
        verifiers = self.logs.get(checkpoint.origin)
        if verifiers is None:
            raise UnknownLog(f"this witness does not know the log {checkpoint.origin!r}")
        verify_note(note, verifiers)
        if request.old_size > checkpoint.size:
            raise MalformedWitnessRequest(f"old size {request.old_size} > checkpoint size {checkpoint.size}")
        with self._transaction() as conn:
            row = conn.execute("SELECT size, root_hash FROM checkpoints WHERE origin = ?",
                               (checkpoint.origin,)).fetchone()
            size, root = (int(row[0]), bytes(row[1])) if row else (0, EMPTY_ROOT)
            if request.old_size != size:
                raise WitnessConflict(checkpoint.origin, request.old_size, size)
            _check_consistent(size, root, checkpoint, request.proof)
            conn.execute("INSERT INTO checkpoints (origin, size, root_hash, checkpoint) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root_hash = excluded.root_hash, "
                         "checkpoint = excluded.checkpoint",
                         (checkpoint.origin, checkpoint.size, checkpoint.root_hash, request.checkpoint))
        cosignature = self.cosigner.sign(note.text.encode())
        return NoteSignature(self.cosigner.name, self.cosigner.key_id, cosignature).line()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        # A connection per call: SQLite's write lock, not a Python lock, orders the racing requests, so two
        # witness processes on one state file are safe too.
        conn = sqlite3.connect(self.state_path, timeout=self._busy_timeout, isolation_level=None)
        try:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise WitnessStateError(f"{self.state_path} cannot be opened as SQLite: {exc}") from None
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def _init_state(self) -> None:
        with self._transaction() as conn:
            app_id, version = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version"))
            if app_id == 0:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                if tables:
                    raise WitnessStateError(f"{self.state_path} is a SQLite file with other tables ({', '.join(tables)})")
                conn.execute(TABLE_SQL)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {STATE_FORMAT}")
            elif app_id != APPLICATION_ID:
                raise WitnessStateError(f"{self.state_path} is not a forgetd witness state (application_id {app_id:#x})")
            elif version > STATE_FORMAT:
                raise WitnessStateError(f"{self.state_path} has witness state format {version}; "
                                        f"this forgetd reads up to {STATE_FORMAT}")


def _verifiers(origin: str, given: LogKeys) -> tuple[NoteVerifier, ...]:
    items = [given] if isinstance(given, (str, NoteVerifier)) else list(given)
    verifiers = tuple(parse_verifier_key(v) if isinstance(v, str) else v for v in items)
    if not origin or "\n" in origin or not verifiers:
        raise WitnessError(f"log {origin!r}: an origin is one non-empty line and needs at least one verifier")
    if len({(v.name, v.key_id) for v in verifiers}) != len(verifiers):
        raise WitnessError(f"log {origin!r}: two verifiers share a key name and key id")
    return verifiers


def _check_consistent(old_size: int, old_root: bytes, checkpoint: Checkpoint, proof: Sequence[bytes]) -> None:
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise InconsistentCheckpoint(f"a checkpoint of size 0 must have the empty tree's root {b64encode(EMPTY_ROOT)}, "
                                     f"got {b64encode(checkpoint.root_hash)}")
    if old_size == 0:
        if proof:
            raise InconsistentCheckpoint(f"old size 0 takes no consistency proof, got {len(proof)} hashes")
        return
    try:
        verify_consistency_proof(old_size, checkpoint.size, old_root, checkpoint.root_hash, proof)
    except ProofError as exc:
        raise InconsistentCheckpoint(f"{checkpoint.origin}: sizes {old_size} -> {checkpoint.size}: {exc}") from None


def refusal(exc: LedgerError) -> WitnessResponse:
    """The HTTP answer to a refused add-checkpoint (STATUSES); anything unlisted is a bug and propagates."""
    status = next((code for cls, code in STATUSES if isinstance(exc, cls)), None)
    if status is None:
        raise exc
    if isinstance(exc, WitnessConflict):
        return WitnessResponse(409, {"Content-Type": SIZE_CONTENT_TYPE}, f"{exc.witness_size}\n".encode())
    return WitnessResponse(status, {"Content-Type": TEXT_CONTENT_TYPE}, f"{exc}\n".encode())


# --- the client: what a log calls ------------------------------------------------------------------------


def request_cosignature(url: str, old_size: int, proof: Sequence[bytes], signed_checkpoint: bytes, *,
                        witness: NoteVerifier | None = None, timeout: float = 30.0) -> tuple[NoteSignature, ...]:
    """POST add-checkpoint to the witness at `url` (its submission prefix) and return its cosignatures.

    With `witness` (its verifier), only that witness's cosignatures are returned, each checked over the
    checkpoint. Raises WitnessConflict (carrying the witness's size: retry with a proof from it),
    CosignatureRefused for any other refusal, WitnessUnavailable when there is no usable answer."""
    body = AddCheckpointRequest(old_size, tuple(proof), bytes(signed_checkpoint)).to_bytes()
    text = parse_note(signed_checkpoint).text
    status, content_type, answer = _post(url.rstrip("/") + "/add-checkpoint", body, timeout)
    if status == 409:
        raise WitnessConflict(parse_checkpoint(text).origin, old_size, _witness_size(answer, content_type))
    if status != 200:
        raise CosignatureRefused(status, answer.decode("utf-8", "replace").strip()[:500])
    try:
        signatures = parse_signature_lines(answer.decode("utf-8"))
    except (MalformedNote, UnicodeDecodeError) as exc:
        raise WitnessUnavailable(f"the witness answered 200 without cosignature lines: {exc}") from None
    if witness is None:
        return signatures
    return verify_note(Note(text, (), signatures), [witness]).signatures


def _witness_size(answer: bytes, content_type: str) -> int:
    size = answer.decode("ascii", "replace")
    if content_type.split(";")[0].strip() != SIZE_CONTENT_TYPE or not size.endswith("\n") or not size[:-1].isdigit():
        raise WitnessUnavailable(f"the witness answered 409 without a {SIZE_CONTENT_TYPE} size: {size[:40]!r}")
    return int(size)


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    import http.client
    import urllib.error
    import urllib.request  # here, not at the top: it costs `import forgetd.ledger` 15 ms for one client call

    if not url.startswith(("http://", "https://")):
        raise WitnessUnavailable(f"a witness URL is http:// or https://, got {url!r}")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": TEXT_CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read(MAX_REQUEST_SIZE)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read(MAX_REQUEST_SIZE)
    except (OSError, http.client.HTTPException) as exc:
        raise WitnessUnavailable(f"cannot reach the witness at {url}: {exc}") from None
