"""JUnit XML of a validation, for CI systems that show test reports."""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def junit_xml(doc: dict[str, Any]) -> str:
    items = doc["items"]
    suite = ET.Element("testsuite", {
        "name": f"supreme validate {doc['profile']}", "tests": str(len(items)),
        "failures": str(sum(i["status"] == "fail" for i in items)),
        "skipped": str(sum(i["status"] in ("skipped", "warn") for i in items)),
    })
    for item in items:
        case = ET.SubElement(suite, "testcase", {"classname": f"validate.{doc['profile']}",
                                                 "name": item["name"]})
        text = (f"value {item['value']} {item['unit']} against {item['threshold']}: "
                f"{item['reason']}")
        if item["status"] == "fail":
            ET.SubElement(case, "failure", {"message": text})
        elif item["status"] in ("skipped", "warn"):
            ET.SubElement(case, "skipped", {"message": f"{item['status']}: {text}"})
        ET.SubElement(case, "system-out").text = text
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_junit(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".junit-", suffix=".xml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(junit_xml(doc))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
