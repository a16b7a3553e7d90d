"""What `forgetd verify` used to let through, and what a killed verify used to leave behind:

- a row store with a damaged index page (every row still reads back) fails SQLite's integrity check;
- a head signing key other than the one genesis committed (serve refuses such a store) is named;
- a forgotten row put back is erased again at the next daemon start, and the log keeps its subject ref;
- SIGTERM during the replay removes the scratch copy (which holds forgotten rows); a scratch copy a SIGKILL
  left behind is removed by the next daemon start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client import Client
from forgetd.client.audit import AuditReport, audit
from forgetd.client.cli.main import main
from forgetd.ledger import subject_ref
from forgetd.ledger.signing import SigningKey

import row_store_tamper
from helpers import REPO, running_daemon, train_small_store


@dataclasses.dataclass
class Forgotten:
    store: Path
    ids: list[str]  # forgotten, in order


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Forgotten:
    """A small store after 4 forgets through a real daemon: copy it (the `case` fixture), never modify it."""
    store = train_small_store(tmp_path_factory.mktemp("gaps") / "store")
    with running_daemon(store) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()[:4]
        for sample, strategy in zip(ids, ("sisa", "dpus", "hs", "ohs")):
            client.forget([sample], strategy=strategy, timeout=120)
    return Forgotten(store, ids)


@pytest.fixture
def case(forgotten: Forgotten, tmp_path: Path) -> Forgotten:
    dest = tmp_path / "store"
    shutil.copytree(forgotten.store, dest)
    return Forgotten(dest, forgotten.ids)


def failed(report: AuditReport, name: str) -> str:
    """The first problem of the check `name`, which must be the only one that failed."""
    assert [c.name for c in report.checks if c.status == "failed"] == [name], report.text()
    return str(report.check(name).problems[0])


def scratch_dirs(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "audit").iterdir() if p.name.startswith("."))


def test_the_untouched_case_verifies(case: Forgotten) -> None:
    report = audit(case.store)
    assert report.ok, report.text()


def test_a_damaged_index_page_of_the_row_store_fails_the_data_check(case: Forgotten) -> None:
    rows = case.store / "rows.sqlite"
    conn = sqlite3.connect(rows)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_meta_1'").fetchone()
    conn.close()
    data = bytearray(rows.read_bytes())
    page = data[(root - 1) * page_size: root * page_size]
    at = (root - 1) * page_size + page.index(b"num_features")
    data[at] = ord("N")  # the index's copy of a key, out of order now; the table itself is intact
    rows.write_bytes(bytes(data))
    first = failed(audit(case.store), "data")
    assert first.startswith("the live row store rows.sqlite fails SQLite's integrity check (expected ok, actual ")


def test_a_replaced_head_signing_key_fails_the_data_check(case: Forgotten) -> None:
    key_file = case.store / "keys" / "head_ed25519.key"
    genesis = SigningKey.from_pem(key_file.read_bytes()).public_key
    other = SigningKey.generate()
    key_file.write_bytes(other.to_pem())
    first = failed(audit(case.store), "data")
    assert first == (f"the store's head signing key (head_ed25519.key) is not the one genesis committed: heads it "
                     f"signs do not verify, and forgetd serve refuses to start (expected {genesis.hex()}, actual "
                     f"{other.public_key.hex()})")


def test_a_forgotten_row_put_back_is_logged_with_its_subject_ref_when_the_daemon_erases_it(
        case: Forgotten, caplog: pytest.LogCaptureFixture) -> None:
    victim = case.ids[1]
    row_store_tamper.put_back(case.store / "audit/genesis", case.store / "rows.sqlite", victim)
    assert failed(audit(case.store), "data").startswith("seq ")  # the audit sees it while it is there
    ref = subject_ref((case.store / "keys/subject.key").read_bytes(), victim)
    with caplog.at_level(logging.WARNING, logger="forgetd.server"), running_daemon(case.store):
        pass
    [record] = [r for r in caplog.records if "had forgotten" in r.getMessage()]
    assert record.levelno == logging.WARNING and ref in record.getMessage() and victim not in record.getMessage()
    assert audit(case.store).ok  # erased again: the log line is what is left of it


def test_sigterm_during_the_replay_removes_the_scratch_copy(case: Forgotten, monkeypatch: pytest.MonkeyPatch) -> None:
    from forgetd.server import replay

    real = replay._replay_one
    seen: list[list[str]] = []

    def terminated(*args: object, **kwargs: object) -> object:
        seen.append(scratch_dirs(case.store))  # the scratch copy exists now
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    def unhandled(signum: int, _frame: object) -> None:  # had verify not taken SIGTERM, this would run
        raise AssertionError("verify left SIGTERM to the default handler")

    monkeypatch.setattr(replay, "_replay_one", terminated)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        result = CliRunner().invoke(main, ["verify", "--store", str(case.store)])
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the command put the handler back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert result.stderr == "Error: stopped by SIGTERM before the audit finished; its scratch copy is removed\n"
    assert seen and seen[0][0].startswith(".replay-") and scratch_dirs(case.store) == []


def test_a_scratch_copy_left_by_sigkill_is_removed_when_the_daemon_starts(
        case: Forgotten, caplog: pytest.LogCaptureFixture) -> None:
    script = ("import os, signal; from pathlib import Path; from forgetd.server.replay import make_scratch; "
              f"s = Path({str(case.store)!r}); make_scratch(s / 'audit/genesis', s / 'audit', b'k' * 32); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120).returncode == -9
    [left] = scratch_dirs(case.store)
    assert (case.store / "audit" / left / "rows.sqlite").is_file()  # rows of forgotten samples among them
    with caplog.at_level(logging.WARNING, logger="forgetd.server"), running_daemon(case.store):
        assert scratch_dirs(case.store) == []
    assert any(f"removed audit/{left}" in r.getMessage() for r in caplog.records)
