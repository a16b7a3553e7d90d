"""Witness cosigning: the configured c2sp.org/tlog-witness witnesses are asked to cosign the ledger's heads,
off the acknowledgement path, and the newest head the quorum cosigned is published.

    witnessing = Witnessing(ledger, config.witnesses, config.quorum)
    witnessing.start()                      # a coordinator thread and one thread per witness
    witnessing.unpublished_reason(seq)      # why no published head holds `seq` yet, in words

Rounds: the coordinator takes the current head and its checkpoint (signed by the head key alone) and offers
it to every witness. Each witness's thread asks its witness with the old size that witness last cosigned
and a consistency proof from there; after a restart of the daemon that size is not known, so the first
request says 0, the witness answers 409 with its size, and the thread asks again from it. As soon as
`quorum` witnesses have cosigned the round's checkpoint, its head is published (LedgerWriter.publish) with
their cosignatures; a witness that answers later adds its own. The next round starts once this one is
settled (the quorum reached, or every witness answered or backing off) and the ledger has grown beyond it,
or, when the quorum was not reached, after a retry delay.

An acknowledgement never waits for any of this: an append only notifies a condition variable. A failing
witness (unreachable, refusing, or a cosignature that is not its key's) is retried with exponential backoff,
from 1 s up to 30 s, and its last answer is what `unpublished_reason` reports. Without witnesses no thread
starts and nothing is sent anywhere.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from forgetd.ledger import Head, LedgerError, NoteSignature, NoteVerifier, WitnessConflict, append_signatures
from forgetd.ledger import parse_verifier_key, request_cosignature

from forgetd.server.runtime.ledger_writer import LedgerWriter

__all__ = ["Witnessing"]

log = logging.getLogger("forgetd.server")

RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(eq=False)
class _Witness:
    url: str
    verifier: NoteVerifier
    size: int = 0  # the size it last cosigned, as far as this daemon knows (0 until it says otherwise)
    cosigned: tuple[int, NoteSignature] | None = None  # (size, its cosignature) of its last success
    error: str = ""  # its last failure; "" after a success
    backoff: float = 0.0
    retry_at: float = 0.0  # time.monotonic() before which it is not asked again

    def describe(self) -> str:
        if self.error:
            return f"{self.url} failed: {self.error}"
        if self.cosigned is not None:
            return f"{self.url} cosigned size {self.cosigned[0]}"
        return f"{self.url} has not answered yet"


@dataclass(eq=False)
class _Round:
    number: int
    head: Head
    checkpoint: bytes  # signed by the head key alone
    cosignatures: dict[str, NoteSignature] = field(default_factory=dict)  # witness URL -> its cosignature
    answered: set[str] = field(default_factory=set)  # witness URLs that answered this round, either way


class Witnessing:
    """The witness quorum of one daemon: see the module docstring."""

    def __init__(self, ledger: LedgerWriter, witnesses: Sequence[tuple[str, str]], quorum: int, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self._ledger = ledger
        self._witnesses = [_Witness(url.rstrip("/"), parse_verifier_key(vkey)) for url, vkey in witnesses]
        self.quorum = quorum
        self._timeout = timeout
        self._cond = threading.Condition()  # guards the witnesses' state and the rounds
        self._round: _Round | None = None
        self._settled_size = 0  # head size of the last settled round
        self._stopping = False
        self._threads: list[threading.Thread] = []

    @property
    def enabled(self) -> bool:
        return bool(self._witnesses)

    def start(self) -> None:
        """Starts the threads (none without witnesses); the first round offers the current head at once."""
        if not self._witnesses:
            return
        targets: list[tuple[str, Callable[[], None]]] = [("forgetd-witnessing", self._coordinate)]
        targets += [(f"forgetd-witness-{i}", functools.partial(self._serve, w)) for i, w in enumerate(self._witnesses)]
        for name, target in targets:
            # Daemon threads: a witness request in flight (at most `timeout` seconds) must not hold up exit.
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stops asking; a request in flight is abandoned (its answer is dropped)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._ledger.wake()
        if self._threads:
            self._threads[0].join(5.0)  # the coordinator only waits on conditions: it ends at once

    def unpublished_reason(self, seq: int) -> str:
        """Why no head the quorum cosigned holds entry `seq` yet: the quorum and each witness's last answer ("" on a
        daemon without witnesses, where nothing is published)."""
        if not self._witnesses:
            return ""  # nothing is ever published here: the proto's sentinel for a server without witnesses
        with self._cond:
            answers = "; ".join(w.describe() for w in self._witnesses)
        return (f"no head holding seq {seq} is cosigned by the witness quorum ({self.quorum} of "
                f"{len(self._witnesses)}) yet (the newest it cosigned has {self._ledger.published_size} entries): "
                f"{answers}")

    def wait_published(self, size: int, timeout: float) -> bool:
        """Blocks until a head of at least `size` entries is published, or `timeout` seconds; whether it is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ledger.published_size >= size, timeout)

    def wait_settled(self, size: int, timeout: float) -> bool:
        """Blocks until a round for a head of at least `size` entries has settled, published or not."""
        with self._cond:
            return self._cond.wait_for(lambda: self._settled_size >= size, timeout)

    # -- the coordinator ------------------------------------------------------------------------------------

    def _coordinate(self) -> None:
        delay = RETRY_MIN_SECONDS
        number = 0
        while not self._stopping:
            head, checkpoint = self._ledger.checkpoint_now()
            number += 1
            with self._cond:
                r = self._round = _Round(number, head, checkpoint)
                for w in self._witnesses:  # a cosignature of this very head is still good: no need to ask again
                    if w.cosigned is not None and w.cosigned[0] == head.size:
                        r.cosignatures[w.url] = w.cosigned[1]
                        r.answered.add(w.url)
                self._publish_if_quorum(r)
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._stopping or self._is_settled(r))
                reached = len(r.cosignatures) >= self.quorum
                self._settled_size = max(self._settled_size, head.size)
                self._cond.notify_all()
                if not reached and not self._stopping:
                    self._cond.wait_for(lambda: self._stopping, delay)  # a retry delay that stop cuts short
                    delay = min(2 * delay, RETRY_MAX_SECONDS)
                    continue
            delay = RETRY_MIN_SECONDS
            self._ledger.wait_appended(head.size, None, stop=lambda: self._stopping)

    def _is_settled(self, r: _Round) -> bool:
        if len(r.cosignatures) >= self.quorum:
            return True
        now = time.monotonic()
        return all(w.url in r.answered or w.retry_at > now for w in self._witnesses)

    def _publish_if_quorum(self, r: _Round) -> None:
        """Publish the round's head with the cosignatures it has, once they are a quorum (caller holds _cond)."""
        if len(r.cosignatures) < self.quorum or self._stopping:
            return
        try:
            self._ledger.publish(r.head, append_signatures(r.checkpoint, r.cosignatures.values()))
        except LedgerError:
            log.exception("publishing the cosigned head of size %d failed", r.head.size)

    # -- one thread per witness -----------------------------------------------------------------------------

    def _serve(self, w: _Witness) -> None:
        handled = 0
        while True:
            with self._cond:
                r = self._next_round(w, handled)
                if r is None:
                    return
                handled = r.number
            answer = self._ask(w, r.head, r.checkpoint)
            with self._cond:
                if self._stopping:
                    return
                self._record(w, r, answer)
                self._cond.notify_all()

    def _next_round(self, w: _Witness, handled: int) -> _Round | None:
        """The round this witness should answer next, once its backoff is over; None when stopping."""
        while not self._stopping:
            r = self._round
            if r is None or r.number <= handled or w.url in r.answered:
                self._cond.wait()
                continue
            delay = w.retry_at - time.monotonic()
            if delay <= 0:
                return r
            self._cond.wait(delay)
        return None

    def _ask(self, w: _Witness, head: Head, checkpoint: bytes) -> NoteSignature | str:
        """The witness's cosignature of `checkpoint`, or why there is none (this thread only; no lock held)."""
        old = w.size
        try:
            for _ in range(3):
                if old > head.size:
                    return (f"it has cosigned size {old} of {self._ledger.origin}, beyond this ledger's {head.size}: "
                            "another ledger signs under this origin, or this one was rolled back")
                proof = self._ledger.consistency(old, head.size) if old else ()
                try:
                    found = request_cosignature(w.url, old, proof, checkpoint, witness=w.verifier,
                                                timeout=self._timeout)
                except WitnessConflict as exc:  # it has cosigned another size: prove consistency from that one
                    old = w.size = exc.witness_size
                    continue
                return found[0] if found else "it answered without a cosignature by its configured key"
            return "it kept answering 409 with another size"
        except LedgerError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug here must not end the thread; logged with its stack
            if self._stopping:
                return "the daemon is stopping"  # the ledger closed under a request in flight: nothing to report
            log.exception("asking witness %s failed", w.url)
            return f"internal error: {exc}"

    def _record(self, w: _Witness, r: _Round, answer: NoteSignature | str) -> None:
        """Keep what the witness answered for round `r` (caller holds _cond)."""
        r.answered.add(w.url)
        if isinstance(answer, NoteSignature):
            if w.error:
                log.info("witness %s cosigned size %d again", w.url, r.head.size)
            w.size, w.cosigned, w.error, w.backoff, w.retry_at = r.head.size, (r.head.size, answer), "", 0.0, 0.0
            r.cosignatures[w.url] = answer
            self._publish_if_quorum(r)
            return
        w.backoff = min(max(RETRY_MIN_SECONDS, 2 * w.backoff), RETRY_MAX_SECONDS)
        w.retry_at = time.monotonic() + w.backoff
        if answer != w.error:
            log.warning("witness %s did not cosign size %d: %s (asking again in %.0f s)", w.url, r.head.size,
                        answer, w.backoff)
        w.error = answer
