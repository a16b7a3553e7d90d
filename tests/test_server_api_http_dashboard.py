"""The live dashboard at GET /: its files, its JSON, and the page as a real headless Chromium renders it
against a real daemon after a few forgets (skipped, with the reason, where Chromium is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from helpers import REPO, RunningDaemon, running_daemon

from forgetd.client import Client

STATIC = REPO / "server" / "api" / "http" / "static"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)
# What starts a headless Chromium that reaches nothing but the page it is given.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1400,1000")
FORGETS = (("sisa", 2), ("dpus", 1), ("hs", 2))


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """A daemon (with an SLA target) that has applied a few forgets and answered a few predictions."""
    store = tmp_path_factory.mktemp("http-dashboard") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store, http_listen="127.0.0.1:0", sla_seconds=30.0) as running:
        ids = iter(running.runtime.engine.sample_ids())
        with Client(running.address) as client:
            for strategy, n in FORGETS:
                client.forget([next(ids) for _ in range(n)], strategy=strategy, wait=True, request_id=str(uuid.uuid4()))
            client.predict(np.zeros((3, running.runtime.info.num_features), np.float32).tolist())
        yield running


def base_url(running: RunningDaemon) -> str:
    return f"http://127.0.0.1:{running.daemon.http_port}"


def test_the_page_and_its_files_are_served_and_name_nothing_elsewhere(served: RunningDaemon) -> None:
    with httpx.Client(base_url=base_url(served), timeout=30.0) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(sources) == ["/static/dashboard.css", "/static/dashboard.js"]
        for path in sources:
            assert http.get(path).status_code == 200
        assert http.get("/static/nothing.js").status_code == 404
        assert http.get("/static/dashboard.html").status_code == 404  # served at / only
    for path in STATIC.iterdir():
        # Nothing may be fetched from the internet: the only URL in the files is the SVG namespace's name.
        urls = set(re.findall(r"\w+://[^\s\"')]+", path.read_text())) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), f"{path.name} names {sorted(urls)}"


def test_the_dashboard_json_holds_the_live_model_and_the_last_forgets(served: RunningDaemon) -> None:
    with httpx.Client(base_url=base_url(served), timeout=30.0) as http:
        snap = http.get("/dashboard.json").json()
    live = served.runtime.live
    assert (snap["model"]["version"], snap["model"]["digest"]) == (live.version, live.digest) == (3, live.digest)
    assert snap["model"]["device"] == "cpu" and snap["model"]["forgotten_count"] == 5
    assert snap["head"]["size"] == 7
    assert [(f["strategy"], f["samples"]) for f in snap["forgets"]] == list(FORGETS)
    assert snap["forgets"][0]["guarantee"] == "exact" and snap["forgets"][1]["guarantee"] == "approximate"
    assert snap["forgets"][0]["retrained_shards"] == [0] and snap["forgets"][1]["retrained_shards"] == []
    assert snap["counters"]["inference_success"] == 1 and snap["counters"]["applied"] == 3
    assert snap["sla"]["target_seconds"] == 30.0 and snap["sla"]["batches"] == 3 and not snap["sla"]["breached"]


class _Texts(HTMLParser):
    """The text of every element with an id, and of every table cell, in a rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.cells: list[str] = []
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append((tag, dict(attrs).get("id")))
        if tag == "td":
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for tag, ident in self._open:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data
        if self.cells and any(tag == "td" for tag, _ in self._open):
            self.cells[-1] += data


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    # Virtual time runs the page's polling timers at once, waiting on each fetch from the daemon.
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium chromium-driver)")
def test_the_page_shows_the_live_model_and_the_forgets_in_a_headless_browser(served: RunningDaemon,
                                                                            tmp_path: Path) -> None:
    url = base_url(served) + "/?interval=500"
    run = chromium(tmp_path, "--dump-dom", url)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _Texts()
    dom.feed(run.stdout)
    live = served.runtime.live
    assert dom.by_id["model-version"] == f"v{live.version}"
    assert dom.by_id["model-device"] == "cpu"
    assert dom.by_id["head-size"] == "7 entries"
    assert dom.by_id["sla-state"] == "met" and dom.by_id["status"] == "serving"
    assert dom.by_id["model-forgotten"] == "5 samples"
    for strategy, _ in FORGETS:
        assert strategy in dom.cells
    assert "exact" in dom.cells and "approximate" in dom.cells
    with httpx.Client(base_url=base_url(served), timeout=30.0) as http:
        retrained = sum(0 in f["retrained_shards"] for f in http.get("/dashboard.json").json()["forgets"])
    assert retrained >= 1 and dom.by_id["legend-retrain"] == f"shard 0 ({retrained})"  # sisa did; dpus subtracted

    shot = tmp_path / "dashboard.png"
    run = chromium(tmp_path, f"--screenshot={shot}", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
