"""The store's writer lock: one process at a time may change a store, and the others can say which one holds it.

An exclusive flock on the store *directory* (a directory cannot be hard-linked, so a linked copy of a store,
an audit vault or a replay's scratch, never shares it); the kernel drops it when its holder exits, however it
exits, so a crashed daemon never leaves a store locked. The holder writes its process id into `writer.pid`
right after taking the lock, so a second daemon can refuse with "held by process PID" instead of a bare
"busy". The pid file is read only while the lock is held by someone else, so a stale one (its writer gone)
is never believed: the next holder overwrites it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from forgetd.server.errors import StoreHeld
from forgetd.server.store.layout import StorePaths

__all__ = ["WriterLock", "check_not_held", "held_message"]


def held_message(root: Path, pid: int | None) -> str:
    who = f"process {pid}" if pid is not None else "another process"
    return f"store {root} is held by {who}; stop it or choose another --store"


class WriterLock:
    """The writer lock of the store at `root`, not yet taken. Closed, and so released, by close() or when an
    engine nobody closed is freed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fd: int | None = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (True), and record this process as its holder."""
        assert self._fd is not None, "the lock is closed"
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        _write_pid(StorePaths(self.root).writer_pid)
        return True

    def acquire_or_raise(self) -> None:
        """Take the lock; StoreHeld naming the holder's pid when another process has it."""
        if not self.acquire():
            raise StoreHeld(held_message(self.root, holder(self.root)))

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def holder(root: Path) -> int | None:
    """The pid the lock's holder recorded; None when it is unreadable (the holder is still writing it)."""
    try:
        return int(StorePaths(root).writer_pid.read_text().strip())
    except (OSError, ValueError):
        return None


def check_not_held(root: Path) -> None:
    """StoreHeld when another process holds the store's writer lock; takes nothing and writes nothing.

    For a command that wants to refuse before it binds a port or prints anything (forgetd serve); the lock
    itself is taken by the engine the daemon opens, which refuses just the same if another got in between."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two checks at once do not see each other
        except BlockingIOError:
            raise StoreHeld(held_message(root, holder(root))) from None
    finally:
        os.close(fd)  # closing drops the shared lock


def _write_pid(path: Path) -> None:
    # Advisory, so not fsynced (after a crash the lock is gone with its holder and the file is not read), and
    # best effort: a store on a read-only mount still opens, its holder is then "another process".
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)
