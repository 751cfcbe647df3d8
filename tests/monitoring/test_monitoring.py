"""monitoring/: alert rules (promtool), their unit tests, the Grafana dashboard, metric names.

Every metric name used by an alert or a dashboard query must be one that docs/METRICS.md
lists (and the app's own tests check that the app exports every name of that file).
promtool is skipped when missing, and mandatory when SUPREME_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT, _missing

MONITORING = REPO_ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRICS_MD = REPO_ROOT / "docs" / "METRICS.md"

ROWS = ["Real-time performance", "Trading", "Cache", "System health"]
METRIC_TOKEN = re.compile(r"\bsupreme_[a-z0-9_]*[a-z0-9]")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count", "_created"), "counter": ("_created",)}


# ----------------------------------------------------------------------------- helpers

def documented_metrics() -> dict[str, str]:
    """{name: type} from the table of docs/METRICS.md (`gauge (1)` counts as gauge)."""
    out: dict[str, str] = {}
    for line in METRICS_MD.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(supreme_[a-z0-9_]+)`\s*\|\s*([a-z]+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def allowed_series(metrics: dict[str, str]) -> dict[str, str]:
    """Series name -> documented metric. A histogram is only queried through its series."""
    out: dict[str, str] = {}
    for name, kind in metrics.items():
        if kind != "histogram":
            out[name] = name
        for suffix in SUFFIXES.get(kind, ()):
            out[name + suffix] = name
    return out


def undocumented(exprs: list[str], allowed: dict[str, str]) -> set[str]:
    return {tok for e in exprs for tok in METRIC_TOKEN.findall(e) if tok not in allowed}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERTS)["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels() -> list[dict[str, Any]]:
    """Every non-row panel, including panels nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for p in dashboard()["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]
    for var in dashboard()["templating"]["list"]:
        query = var.get("query")
        if var.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables so that promtool can parse the query."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        _missing("promtool", "SUPREME_REQUIRE_SERVICES")
    assert path is not None
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, check=False)


# ----------------------------------------------------------------------------- promtool

def test_alert_rules_are_valid(promtool: str) -> None:
    res = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(alert_rules())} rules found" in res.stdout + res.stderr


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    res = run_promtool(promtool, "test", "rules", str(ALERTS_TEST))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_promtool_catches_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The unit tests are strict enough to fail: a wrong threshold makes them fail."""
    text = ALERTS.read_text(encoding="utf-8")
    broken = text.replace("supreme_store_up == 0", "supreme_store_up == 1")
    assert broken != text
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    res = run_promtool(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert res.returncode != 0, res.stdout + res.stderr


def test_prometheus_example_config_is_valid(promtool: str) -> None:
    res = run_promtool(promtool, "check", "config", str(PROMETHEUS_YML))
    assert res.returncode == 0, res.stdout + res.stderr
    config = load_yaml(PROMETHEUS_YML)
    assert config["rule_files"] == ["alerts.yml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "supreme"
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9108"]


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL: promtool parses them as recording rules."""
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(e)}
             for i, e in enumerate(exprs) if not e.startswith("label_values(")]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    res = run_promtool(promtool, "check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- rules

def test_every_rule_has_a_firing_and_a_quiet_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for t in case.get("alert_rule_test", []):
            (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) - fired == set(), "rules without a firing test"
    assert set(names) - quiet == set(), "rules without a not-firing test"
    assert (fired | quiet) - set(names) == set(), "tests for rules that do not exist"


def test_rules_are_the_guide_s_and_are_labelled() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert {"HighLatency", "LowWinRate", "HighMemory", "LowCacheHitRate", "FeedStalled",
            "ExchangeDown", "RedisDown", "StoreDown", "HighErrorRatio"} <= set(rules)
    assert "histogram_quantile(0.95" in rules["HighLatency"]["expr"]
    assert "rate(supreme_processing_latency_seconds_bucket" in rules["HighLatency"]["expr"]
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        assert "for" in rule, name


# ----------------------------------------------------------------------------- metric names

def test_metrics_md_is_readable() -> None:
    metrics = documented_metrics()
    assert len(metrics) >= 20
    assert metrics["supreme_processing_latency_seconds"] == "histogram"
    assert metrics["supreme_ticks_total"] == "counter"


def test_name_check_rejects_unknown_names() -> None:
    allowed = allowed_series(documented_metrics())
    assert undocumented(["rate(supreme_ticks_total[1m])"], allowed) == set()
    assert undocumented(["supreme_processing_latency_seconds_bucket"], allowed) == set()
    assert undocumented(["rate(supreme_tick_total[1m])"], allowed) == {"supreme_tick_total"}
    # A histogram's bare name is not a series.
    assert undocumented(["supreme_processing_latency_seconds > 1"], allowed) == {
        "supreme_processing_latency_seconds"}
    assert undocumented(["supreme_memory_usage_bytes_bucket"], allowed) == {
        "supreme_memory_usage_bytes_bucket"}


def test_rules_use_only_documented_metrics() -> None:
    allowed = allowed_series(documented_metrics())
    exprs = [r["expr"] for r in alert_rules()]
    assert undocumented(exprs, allowed) == set()


def test_dashboard_uses_only_documented_metrics() -> None:
    allowed = allowed_series(documented_metrics())
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    assert undocumented(exprs, allowed) == set()


def test_dashboard_shows_every_documented_metric() -> None:
    allowed = allowed_series(documented_metrics())
    used = {allowed[t] for e in dashboard_exprs() for t in METRIC_TOKEN.findall(e) if t in allowed}
    assert set(documented_metrics()) - used == set()


# ----------------------------------------------------------------------------- dashboard

def test_dashboard_identity_and_datasource_variable() -> None:
    d = dashboard()
    assert d["uid"] == "supreme-system"
    assert d["title"] == "Supreme System"
    assert 36 <= d["schemaVersion"] <= 41
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"


def test_dashboard_has_the_four_rows_in_order() -> None:
    rows = [p["title"] for p in dashboard()["panels"] if p.get("type") == "row"]
    assert rows == ROWS


def test_every_panel_has_a_datasource_and_a_target() -> None:
    panels = dashboard_panels()
    assert len(panels) >= 20
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["title"]


def test_dashboard_rows_hold_their_panels() -> None:
    """Each row has panels under it; panels have unique ids and do not overlap."""
    top = dashboard()["panels"]
    rows = [i for i, p in enumerate(top) if p.get("type") == "row"]
    assert rows[0] == 0
    for a, b in zip(rows, [*rows[1:], len(top)], strict=True):
        assert b - a > 1 or top[a].get("panels"), f"row {top[a]['title']!r} is empty"
    ids = [p["id"] for p in top]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in top:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_dashboard_latency_panel_uses_quantiles_over_rates() -> None:
    [panel] = [p for p in dashboard_panels() if p["title"].startswith("Processing latency")]
    exprs = [t["expr"] for t in panel["targets"]]
    for q in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q}, sum by (le) (rate(") for e in exprs), q
