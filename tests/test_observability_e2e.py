"""Metrics, readiness and alerts proven against a real Prometheus (Debian's ``prometheus`` package).

The local pipeline (Tansu broker, registry, Coinbase simulator, connector, processor, gateway) runs
with a short silence timeout; a Prometheus on loopback scrapes the connector, the processor and the
gateway every two seconds, with a copy of ``deploy/prometheus/alerts.yml`` whose ``for:`` durations
are short (the committed rules keep production values).  Everything is asked through Prometheus's
HTTP API: the connector's frame rate, records per topic, the latency histogram, readiness, the
gateway's records consumed per topic, every PromQL expression of the Grafana dashboard; then the
simulator stops, and the connector's ``/ready``, its ``connection_up`` gauge and the silent-feed
alert must all say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from l3_atom.config import DEFAULT_CONFIG_PATH
from l3_atom.infra.local_pipeline import LocalPipeline
from l3_atom.infra.processes import LOOPBACK, PROJECT_ROOT, free_port, start_process, stop_process, wait_until
from tests.local.helpers import http_get as http

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DEPLOY = PROJECT_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "l3_atom.json"
SILENCE_TIMEOUT_S = 4
TEST_FOR = "1s"
# Scrapes every 2 s (a scrape may wait behind a batch on a loaded machine: its timeout is the interval);
# rates over 20 s windows always hold several samples.
SCRAPE_INTERVAL = "2s"
RATE_WINDOW = "20s"
WAIT_S = 120.0
POLL_S = 1.0
# Panels that must show data while the pipeline runs (dead letters and resyncs may rightly be empty).
CORE_PANELS = (
    "Frames received /s", "Records out /s by topic", "Latency p99 (receive to produce)",
    "Consumer lag (raw records)", "Books in sync / lost", "Connections up", "Seconds since last frame",
    "Roles ready",
)


def _need_prometheus() -> None:
    if Path(PROMETHEUS).exists() and Path(PROMTOOL).exists():
        return
    reason = f"no Prometheus at {PROMETHEUS} (Debian: apt-get install -y prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs it in .ci/run")
    pytest.skip(reason)


class Prometheus:
    """A real Prometheus server on loopback, its own storage in ``workdir``; stopped by :meth:`stop`."""

    def __init__(self, workdir: Path, targets: dict[str, str], rules: Path):
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": f"l3_atom_{role}", "static_configs": [{"targets": [target]}]}
                for role, target in targets.items()
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.proc = start_process(
            [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address={LOOPBACK}:{self.port}"],
            log_path=self.workdir / "prometheus.log",
        )
        wait_until(lambda: http(f"{self.url}/-/ready")[0] == 200, WAIT_S, "prometheus", interval=0.2)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def api(self, path: str, **params: str) -> Any:
        status, body = http(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        assert answer["status"] == "success", f"{path} {params}: HTTP {status} {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series; the expression and what it returned are printed for the report."""
        result = self.api("query", query=expr)["result"]
        shown = [(series["metric"], series["value"][1]) for series in result]
        print(f"PromQL {expr}\n  -> {shown}")
        return result


def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what`` after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_S:.0f} s")
        time.sleep(POLL_S)


def values(result: list[dict[str, Any]], label: str | None = None) -> dict[str, float]:
    return {series["metric"].get(label, "") if label else "": float(series["value"][1]) for series in result}


def test_config_rules_and_dashboard_are_valid_promtool_and_json() -> None:
    _need_prometheus()
    for check, path in (("config", PROMETHEUS_CONFIG), ("rules", ALERT_RULES)):
        done = subprocess.run([PROMTOOL, "check", check, str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"promtool check {check} {path}:\n{done.stdout}{done.stderr}"
    titles = {panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"]}
    assert set(CORE_PANELS) <= titles


def short_rules(tmp_path: Path) -> Path:
    """The committed rules with every ``for:`` shortened; the expressions are the committed ones."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = TEST_FOR
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) with Grafana's variables replaced as Grafana would (all sources)."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"].replace("$__rate_interval", RATE_WINDOW).replace("$source", ".*")


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    config = tmp_path / "config.ini"
    text = DEFAULT_CONFIG_PATH.read_text()
    assert "silence_timeout_s = 30" in text
    config.write_text(text.replace("silence_timeout_s = 30", f"silence_timeout_s = {SILENCE_TIMEOUT_S}"))
    workdir = tmp_path / "pipeline"
    workdir.mkdir()
    stack = LocalPipeline(rate=200.0, workdir=workdir, gateway=True)
    stack.config_path = config
    with stack:
        yield stack


def test_prometheus_scrapes_every_role_and_the_silent_feed_alert_fires(pipeline: LocalPipeline, tmp_path: Path) -> None:
    _need_prometheus()
    connector_url, processor_url = pipeline.metrics_url("connector"), pipeline.metrics_url("processor0")
    # The gateway serves /metrics on its own port, beside its stream.
    gateway_url = f"http://{LOOPBACK}:{pipeline.gateway_port}"
    targets = {role: url.removeprefix("http://") for role, url in
               (("connector", connector_url), ("processor", processor_url), ("gateway", gateway_url))}
    prometheus = Prometheus(tmp_path, targets, short_rules(tmp_path))
    try:
        prometheus.start()
        # The pipeline runs: frames in, records out per topic, latency observed, both roles ready.
        frames = eventually(lambda: [s for s in prometheus.query(
            f"sum by (source) (rate(l3_atom_connector_frames_total[{RATE_WINDOW}])) > 0") if s], "a frame rate")
        assert values(frames, "source")["coinbase"] > 0
        records = eventually(lambda: (found := values(prometheus.query(
            "sum by (topic) (l3_atom_processor_records_total)"), "topic")) and all(
            found.get(topic, 0) > 0 for topic in ("lob_l3", "trades_l3", "ticker")) and found, "records per topic")
        assert records["lob_l3"] > 0
        observed = eventually(lambda: values(prometheus.query(
            "sum(l3_atom_processor_latency_seconds_count) > 0")), "latency observations")
        assert observed[""] > 0
        eventually(lambda: values(prometheus.query(
            f"histogram_quantile(0.99, sum by (le) (rate(l3_atom_processor_latency_seconds_bucket[{RATE_WINDOW}])))")),
            "a p99 latency")
        ready = eventually(lambda: (found := values(prometheus.query("l3_atom_ready"), "role")) and len(found) == 3
                           and all(found.values()) and found, "every role ready")
        assert ready == {"connector": 1.0, "processor": 1.0, "gateway": 1.0}
        consumed = eventually(lambda: (found := values(prometheus.query(
            "sum by (topic) (l3_atom_gateway_consumed_records_total)"), "topic")) and all(
            found.get(topic, 0) > 0 for topic in ("lob_l3", "trades_l3")) and found, "gateway records per topic")
        assert consumed["lob_l3"] > 0
        assert http(f"{connector_url}/ready")[0] == 200
        assert http(f"{processor_url}/ready")[0] == 200
        eventually(lambda: values(prometheus.query("l3_atom_processor_consumer_lag_messages")), "consumer lag")

        # Every dashboard expression runs without error (``query`` asserts it); the core panels have data.
        for title, expr in dashboard_queries():
            if title in CORE_PANELS:
                eventually(lambda expr=expr: prometheus.query(expr), f"data in dashboard panel {title!r}: {expr}")
            else:
                prometheus.query(expr)

        # The exchange goes away: not ready with the reason, connection down, the silent-feed alert fires.
        stop_process(pipeline.processes.pop("simulator"))
        status, body = eventually(lambda: (answer := http(f"{connector_url}/ready"))[0] == 503 and answer,
                                  "connector /ready answering 503")
        reasons = json.loads(body)["reasons"]
        print(f"connector /ready -> {status} {reasons}")
        assert any("coinbase.0" in reason for reason in reasons)
        eventually(lambda: values(prometheus.query("l3_atom_connector_connection_up == 0")), "connection_up 0")

        def firing() -> list[dict[str, Any]]:
            alerts = prometheus.api("alerts")["alerts"]
            print(f"alerts -> {[(a['labels']['alertname'], a['state'], a['labels'].get('connection')) for a in alerts]}")
            return [a for a in alerts if a["labels"]["alertname"] == "L3AtomFeedSilent" and a["state"] == "firing"]

        silent = eventually(firing, "L3AtomFeedSilent firing")
        assert silent[0]["labels"]["source"] == "coinbase"
        assert silent[0]["labels"]["connection"] == "coinbase.0"
    finally:
        prometheus.stop()
