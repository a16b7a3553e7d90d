"""GET /metrics on a real daemon (prometheus_client's own parser reads it), the SLA (gauge, log lines,
GetModel), and the shipped Prometheus rules and Grafana dashboard naming only metrics the daemon exports."""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from helpers import REPO, RunningDaemon, running_daemon

from forgetd.client import Client, InvalidArgument
from forgetd.client.cli.main import main
from forgetd.server.config import ServerConfig
from forgetd.server.errors import InvalidConfig
from forgetd.server.observe import Metrics, SlaWatch
from forgetd.v1 import inference_service_pb2

TOKEN = "tok"


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    store = tmp_path_factory.mktemp("http-metrics") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store, http_listen="127.0.0.1:0", token=TOKEN) as running:
        yield running


def http_of(running: RunningDaemon) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{running.daemon.http_port}", timeout=60.0)


def scrape(running: RunningDaemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics serves, by (name, sorted labels)."""
    with http_of(running) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def forget(running: RunningDaemon, n: int, strategy: str) -> list[str]:
    taken = set(running.runtime.engine.sample_ids())
    ids = sorted(taken)[:n]
    with http_of(running) as http:
        key = str(uuid.uuid4())
        accepted = http.post("/unlearn", json={"sample_ids": ids, "method": strategy},
                             headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key})
        assert accepted.status_code == 202, accepted.text
        assert http.get(f"/unlearn/{key}", params={"wait": "true"}).json()["status"] == "applied"
    return ids


def predict_grpc(running: RunningDaemon, rows: int = 1) -> None:
    f = running.runtime.info.num_features
    with Client(running.address) as client:
        client.predict(np.zeros((rows, f), np.float32).tolist())


def test_unlearning_metrics_move_after_a_forget(served: RunningDaemon) -> None:
    before = scrape(served)
    version = served.runtime.live.version
    forget(served, 2, "sisa")
    after = scrape(served)
    moved = {name: value(after, name, **labels) - value(before, name, **labels) for name, labels in [
        ("forgetd_unlearning_requests_acknowledged_total", {}),
        ("forgetd_unlearning_requests_applied_total", {}),
        ("forgetd_unlearning_duration_seconds_count", {"strategy": "sisa"}),
        ("forgetd_unlearning_completion_seconds_count", {"strategy": "sisa"}),
        ("forgetd_shard_retrain_seconds_count", {"shard": "0"}),
        ("forgetd_unlearning_samples_forgotten_total", {"strategy": "sisa", "guarantee": "exact"}),
        ("forgetd_model_forgotten_samples", {}),
        ("forgetd_ledger_entries", {}),
    ]}
    assert moved == {"forgetd_unlearning_requests_acknowledged_total": 1, "forgetd_unlearning_requests_applied_total": 1,
                     "forgetd_unlearning_duration_seconds_count": 1, "forgetd_unlearning_completion_seconds_count": 1,
                     "forgetd_shard_retrain_seconds_count": 1, "forgetd_unlearning_samples_forgotten_total": 2,
                     "forgetd_model_forgotten_samples": 2, "forgetd_ledger_entries": 2}
    assert value(after, "forgetd_model_version") == version + 1
    assert value(after, "forgetd_unlearning_samples_read_total", strategy="sisa") > 0
    assert value(after, "forgetd_unlearning_duration_seconds_sum", strategy="sisa") > 0
    assert value(after, "forgetd_unlearning_queue_depth") == 0 and value(after, "forgetd_unlearning_halted") == 0
    assert value(after, "forgetd_sla_mean_seconds") > 0 and value(after, "forgetd_sla_breached") == 0


def test_inference_metrics_move_after_predictions_on_every_front(served: RunningDaemon) -> None:
    version = str(served.runtime.live.version)
    labels = {"model": "forgetd", "version": version}
    before = scrape(served)
    predict_grpc(served)
    predict_grpc(served, rows=5)
    f = served.runtime.info.num_features
    with http_of(served) as http:
        body = {"inputs": [{"name": "features", "shape": [1, f], "datatype": "FP32", "data": [0.0] * f}]}
        assert http.post("/v2/models/forgetd/infer", json=body).status_code == 200
    with Client(served.address) as client, pytest.raises(InvalidArgument):
        client.predict([[0.0] * (f + 1)])  # the wrong width: a failure
    after = scrape(served)
    assert value(after, "forgetd_inference_request_success_total", **labels) - \
        value(before, "forgetd_inference_request_success_total", **labels) == 3
    assert value(after, "forgetd_inference_request_failure_total", **labels) - \
        value(before, "forgetd_inference_request_failure_total", **labels) == 1
    assert value(after, "forgetd_inference_request_duration_seconds_count", **labels) - \
        value(before, "forgetd_inference_request_duration_seconds_count", **labels) == 3
    assert value(after, "forgetd_inference_request_duration_seconds_bucket", le="+Inf", **labels) == \
        value(after, "forgetd_inference_request_duration_seconds_count", **labels)


def test_openmetrics_is_served_when_the_scraper_asks_for_it(served: RunningDaemon) -> None:
    with http_of(served) as http:
        answer = http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


def test_two_daemons_in_one_process_keep_their_own_registries(served: RunningDaemon, store: Path) -> None:
    with running_daemon(store, http_listen="127.0.0.1:0") as other:
        predict_grpc(other)
        mine, theirs = scrape(served), scrape(other)
    assert value(theirs, "forgetd_inference_request_success_total", model="forgetd", version="0") == 1
    assert value(theirs, "forgetd_unlearning_requests_applied_total") == 0
    assert value(mine, "forgetd_unlearning_requests_applied_total") >= 1


def test_a_breached_sla_flips_the_gauge_logs_once_and_shows_in_get_model(store: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="forgetd.server"):
        with running_daemon(store, http_listen="127.0.0.1:0", token=TOKEN, sla_seconds=1e-6, sla_window=2) as running:
            forget(running, 1, "dpus")
            forget(running, 1, "dpus")
            samples = scrape(running)
            response = get_model(running)
    assert value(samples, "forgetd_sla_breached") == 1 and value(samples, "forgetd_sla_target_seconds") == 1e-6
    assert value(samples, "forgetd_sla_window") == 2
    assert response.sla.breached and response.sla.target_seconds == 1e-6 and response.sla.window == 2
    assert response.sla.batches == 2 and response.sla.mean_seconds > 1e-6
    breaches = [r for r in caplog.records if "SLA breached" in r.getMessage()]
    assert len(breaches) == 1 and "above the target of 1e-06 s" in breaches[0].getMessage()


def get_model(running: RunningDaemon) -> inference_service_pb2.GetModelResponse:
    inference, _ = running.stubs()
    return inference.GetModel(inference_service_pb2.GetModelRequest())


def test_the_sla_watch_logs_once_on_breach_and_once_on_recovery(caplog: pytest.LogCaptureFixture) -> None:
    watch = SlaWatch(target_seconds=1.0, window=3)
    with caplog.at_level(logging.INFO, logger="forgetd.server"):
        states = [watch.record(s) for s in (0.5, 2.0, 2.0, 3.0, 0.1, 0.1, 0.1)]
    assert [s.breached for s in states] == [False, True, True, True, True, True, False]
    assert [round(s.mean_seconds, 3) for s in states] == [0.5, 1.25, 1.5, 2.333, 1.7, 1.067, 0.1]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "SLA breached" in m]) == 1
    assert len([m for m in messages if "SLA met again" in m]) == 1
    assert "1.25 s over the last 2 batch(es), above the target of 1 s" in messages[0]


def test_without_a_target_the_sla_is_measured_but_never_breached() -> None:
    watch = SlaWatch(None, 2)
    assert not watch.record(1e9).breached and watch.state.mean_seconds == 1e9


def test_the_series_of_old_versions_are_dropped_and_their_counts_kept() -> None:
    metrics = Metrics()
    for version in range(5):
        for _ in range(version + 1):
            with metrics.inference(version):
                pass
    with pytest.raises(ValueError), metrics.inference(4):
        raise ValueError("a failed request still propagates")
    versions = {s.labels["version"] for family in metrics.registry.collect() for s in family.samples
                if s.name == "forgetd_inference_request_success_total"}
    assert versions == {"3", "4"}  # the live one and the one before it
    assert metrics.inference_totals() == (15, 1)


# ------------------------------------------------------------------------------------------- docs/


def exported_names(served: RunningDaemon) -> set[str]:
    """Every sample name the daemon's registry holds after a forget and a predict."""
    forget(served, 1, "ohs")
    predict_grpc(served)
    return {s.name for family in served.runtime.metrics.registry.collect() for s in family.samples}


PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "deriv", "histogram_quantile", "clamp_min",
    "min_over_time", "max_over_time", "by", "without", "and", "or", "unless", "on", "ignoring", "bool",
    "label_values", "instance", "le", "strategy", "shard", "guarantee",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana variable query) expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values, strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", expr)  # matchers, ranges, Grafana variables
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr))
    unknown = words - PROMQL_WORDS - {w for w in words if w.startswith("forgetd_")}
    assert not unknown, f"{expr!r} names {sorted(unknown)}: neither a forgetd metric nor a PromQL word"
    return {w for w in words if w.startswith("forgetd_")}


def rule_expressions(text: str) -> list[str]:
    try:
        import yaml
    except ImportError:  # a small parser: every rule's expr sits on one line in alerts.yml
        return [m.group(1).strip() for m in re.finditer(r"^\s*expr:\s*(.+)$", text, re.MULTILINE)]
    doc = yaml.safe_load(text)
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions(doc: dict) -> list[str]:  # type: ignore[type-arg]
    out = []
    for panel in doc["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [t["expr"] for t in inner.get("targets", [])]
    out += [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return out


def test_the_alert_rules_and_the_grafana_dashboard_name_only_exported_metrics(served: RunningDaemon) -> None:
    exported = exported_names(served)
    rules = rule_expressions((REPO / "docs" / "prometheus" / "alerts.yml").read_text())
    dashboard = json.loads((REPO / "docs" / "grafana" / "forgetd.json").read_text())
    panels = dashboard_expressions(dashboard)
    assert len(rules) >= 3 and len(panels) >= 10
    named = set()
    for expr in rules + panels:
        names = metric_names(expr)
        assert names, f"{expr!r} reads no forgetd metric"
        assert names <= exported, f"{expr!r} reads {sorted(names - exported)}, which the daemon does not export"
        named |= names
    # The rules alert on the SLA gauge and on the failure rate; the dashboard shows what the brief asks of it.
    assert {"forgetd_sla_breached", "forgetd_inference_request_failure_total"} <= {n for e in rules for n in metric_names(e)}
    assert {"forgetd_inference_request_success_total", "forgetd_inference_request_duration_seconds_bucket",
            "forgetd_unlearning_duration_seconds_bucket", "forgetd_shard_retrain_seconds_sum",
            "forgetd_unlearning_queue_depth", "forgetd_sla_breached"} <= named
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_name_extractor_rejects_a_misspelt_metric() -> None:
    assert metric_names('sum by (le) (rate(forgetd_x_bucket{instance=~"$instance"}[$__rate_interval]))') == {
        "forgetd_x_bucket"}
    with pytest.raises(AssertionError, match="nv_inference_count"):
        metric_names("rate(nv_inference_count[5m])")


@pytest.mark.parametrize("settings, field", [({"sla_seconds": 0}, "sla_seconds"), ({"sla_seconds": -1.5}, "sla_seconds"),
                                             ({"sla_seconds": float("nan")}, "sla_seconds"),
                                             ({"sla_window": 0}, "sla_window"), ({"sla_window": 2.5}, "sla_window")])
def test_sla_settings_out_of_range_are_refused_with_the_fix(tmp_path: Path, settings: dict[str, float],
                                                           field: str) -> None:
    with pytest.raises(InvalidConfig, match=f"^{field} is .*; give"):
        ServerConfig(store=tmp_path, **settings)  # type: ignore[arg-type]


def test_serve_takes_the_sla_flags_and_refuses_a_zero_target() -> None:
    help_ = CliRunner().invoke(main, ["serve", "-h"]).output
    assert "--sla-seconds" in help_ and "--sla-window" in help_
    result = CliRunner().invoke(main, ["serve", "--sla-seconds", "0"])
    assert result.exit_code == 2 and "--sla-seconds" in result.output
