"""`supreme validate`: the checklist, measured, with statuses, JUnit, storage, exit codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.validation.checklist import ITEMS, ValidationPlan, _item, plan_from_profile
from tests.cli.helpers import invoke


def test_item_status_rules() -> None:
    assert _item("x", 1, "", 2, True, True, "")["status"] == "pass"
    assert _item("x", 1, "", 2, True, False, "")["status"] == "fail"
    assert _item("x", 1, "", 2, False, False, "")["status"] == "warn"
    assert _item("x", None, "", 2, False, None, "")["status"] == "skipped"
    assert _item("x", None, "", 2, True, None, "")["status"] == "fail"  # unmeasurable


def test_profiles_name_only_known_items() -> None:
    from engine.config import profile_section

    for name in ("quick", "realtime", "extended"):
        plan = plan_from_profile(name, profile_section(name, "validation"), None)
        assert isinstance(plan, ValidationPlan)
        assert plan.required <= set(ITEMS)
        assert plan.duration_s >= 300
    assert plan_from_profile("quick", profile_section("quick", "validation"), 30).duration_s == 30


@pytest.mark.slow
def test_quick_validation_in_seconds(data_dir: Path, tmp_path: Path) -> None:
    from engine.testing.fake_exchange import FakeExchange

    junit = tmp_path / "v.xml"
    with FakeExchange(ws_interval_s=None) as fx:
        r = invoke("validate", "--profile", "quick", "--duration", "20", "--json",
                   "--junit", str(junit), "--endpoint", fx.base_url)
    doc = r.json()
    assert r.exit_code == (0 if doc["passed"] else 9), r.stderr
    names = [item["name"] for item in doc["items"]]
    assert names == list(ITEMS)
    by_name = {item["name"]: item for item in doc["items"]}
    for item in doc["items"]:
        assert set(item) == {"name", "value", "unit", "threshold", "required", "status",
                             "reason"}
        assert item["status"] in ("pass", "fail", "warn", "skipped")
        if item["status"] == "skipped":
            assert item["reason"]
    # measured, not copied: the latency is a real, positive number from this run
    assert by_name["latency_avg"]["value"] > 0
    assert by_name["exchange_connectivity"]["value"] == 1.0  # the fake answered
    assert doc["passed"] == (not any(i["status"] == "fail" for i in doc["items"]))
    suite = ET.parse(junit).getroot()
    assert int(suite.get("tests", 0)) == len(ITEMS)
    assert int(suite.get("failures", 0)) == sum(i["status"] == "fail" for i in doc["items"])
    from engine.store import open_store

    store = open_store(None, data_dir)
    try:
        assert store.stats_for_run(doc["validation_id"])["validate:quick"]["items"]
    finally:
        store.close()


def test_unknown_validation_profile_exits_2(data_dir: Path) -> None:
    r = invoke("validate", "--profile", "conservative", "--json")
    assert r.exit_code == 2
    assert "[validation]" in r.json()["error"]["message"]
