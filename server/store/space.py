"""A full file system as one clean error: space reserved before a file is mapped, ENOSPC turned into NoSpace.

Why it exists: the engine streams increments into memory-mapped files. A mapped file made by truncating it
to size is sparse, and on a full file system the kernel finds no page for the first store into it and kills
the process with SIGBUS: no exception, no cleanup, a daemon gone. `reserve` allocates every byte before the
file is mapped (posix_fallocate, or zeros written where the file system cannot allocate), so a full disk is
an ENOSPC at a point where it can be caught. Every writer of a store (engine, replay, vault) turns ENOSPC,
EDQUOT and SQLite's SQLITE_FULL into NoSpace, whose message says where and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from forgetd.server.errors import NoSpace

__all__ = ["is_full", "no_space", "reserve", "full_as_no_space"]

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_ZEROS = bytes(1 << 20)


def is_full(exc: BaseException) -> bool:
    """Whether `exc` says the file system is full (or the quota spent): ENOSPC, EDQUOT or SQLITE_FULL."""
    if isinstance(exc, NoSpace):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def no_space(where: Path, what: str) -> NoSpace:
    """The error for a full file system under `where` while doing `what`."""
    return NoSpace(f"no space left on the device of {where} ({what}); free space there and try again")


def reserve(fd: int, offset: int, length: int) -> None:
    """Allocate bytes offset..offset+length of the open file `fd` (holes included); OSError (ENOSPC) when
    they do not fit.

    posix_fallocate where the platform and the file system have it; otherwise that range is written with
    zeros, which allocates it just as well (slower; only for a range that is meant to hold zeros)."""
    if length <= 0:
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, offset, length)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    os.lseek(fd, offset, os.SEEK_SET)
    left = length
    while left > 0:
        left -= os.write(fd, _ZEROS[: min(left, len(_ZEROS))])


@contextlib.contextmanager
def full_as_no_space(where: Path, what: str) -> Iterator[None]:
    """Inside: a full file system (is_full) is re-raised as NoSpace naming `where` and `what`."""
    try:
        yield
    except NoSpace:
        raise
    except (OSError, sqlite3.Error) as exc:
        if not is_full(exc):
            raise
        raise no_space(where, what) from exc
