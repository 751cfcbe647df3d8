"""`supreme stats --report`: the same figures as the command, as a Markdown file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_markdown(doc: dict[str, Any]) -> str:
    src = doc["source"]
    lines = [f"# Statistics: {src['label']}", ""]
    if src.get("run_id"):
        lines += [f"Run `{src['run_id']}`.", ""]
    cols = [("metric", None), (src["label"], doc["metrics"])]
    if doc.get("baseline"):
        cols.append((doc["baseline"]["label"], doc["baseline"]["metrics"]))
    lines.append("| " + " | ".join(c for c, _ in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for key in doc["metrics"]:
        lines.append("| " + " | ".join([key] + [_cell(m.get(key)) for _, m in cols[1:] if m])
                     + " |")
    comparison = doc.get("comparison")
    if comparison:
        adjusted = comparison.get("holm", {}).get("adjusted", {})
        lines += ["", f"## Significance (α = {comparison['alpha']})", "",
                  "| test | estimate | p | Holm p | null hypothesis |", "|---|---|---|---|---|"]
        for t in comparison["tests"]:
            lines.append(f"| {t['test']} | {_cell(t.get('estimate'))} | "
                         f"{_cell(t.get('p_value'))} | {_cell(adjusted.get(t['test']))} | "
                         f"{t['null']} |")
        lines += ["", f"**Verdict:** {doc.get('verdict', '')}"]
    if doc.get("walk_forward"):
        lines += ["", "## Walk-forward", "", "```json",
                  json.dumps(doc["walk_forward"], indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def write_report(doc: dict[str, Any], folder: Path) -> Path:
    """Write atomically to folder/stats-<run or label>.md and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = doc["source"].get("run_id") or Path(doc["source"]["label"]).stem
    path = folder / f"stats-{name}.md"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stats-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render_markdown(doc))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
