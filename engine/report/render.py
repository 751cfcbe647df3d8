"""The daily report as Markdown, a self-contained HTML page (inline SVG charts, no network)
and JSON, written atomically. Every byte derives from the document: same store, same files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.report.svg import line_chart

FORMATS = ("md", "html", "json")
_EXT = {"md": ".md", "html": ".html", "json": ".json"}


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise ConfigError(f"--format {text!r}: choose from {', '.join(FORMATS)}")
    return sorted(set(wanted), key=FORMATS.index)


def fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.2f} %"


def base_name(doc: Mapping[str, Any]) -> str:
    if doc["since"] == doc["date"]:
        return f"supreme-daily-{doc['date']}"
    return f"supreme-daily-{doc['since']}_{doc['date']}"


def title(doc: Mapping[str, Any]) -> str:
    period = doc["date"] if doc["since"] == doc["date"] else f"{doc['since']} .. {doc['date']}"
    return f"supreme daily report · {period} (UTC)"


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# --- tables shared by Markdown and HTML -------------------------------------------------

def summary_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    t = doc["totals"]
    m = t["metrics"] or {}
    return [
        ("runs", fmt(t["runs"])), ("trades", fmt(t["trades"])),
        ("wins / losses", f"{t['wins']} / {t['losses']}"), ("win rate", pct(t["win_rate"])),
        ("win rate 95 % CI", "–" if not m.get("win_rate_ci") else
         f"{pct(m['win_rate_ci'][0])} – {pct(m['win_rate_ci'][1])}"),
        ("PnL", fmt(t["pnl"], ".2f")), ("fees", fmt(t["fees"], ".2f")),
        ("bars", fmt(t["bars"])), ("compounded return", pct(m.get("total_return"))),
        ("max drawdown (chained curve)", pct(t["max_drawdown"])),
        ("Sharpe", fmt(m.get("sharpe"), ".3f")), ("Sortino", fmt(m.get("sortino"), ".3f")),
        ("profit factor", fmt(m.get("profit_factor"), ".3f")),
        ("expectancy", fmt(m.get("expectancy"), ".4f")), ("SQN", fmt(m.get("sqn"), ".3f")),
        ("PSR", fmt(m.get("psr"), ".3f")),
    ]


RUN_HEADERS = ("run", "started (UTC)", "status", "feed", "bars", "trades", "win rate", "PnL",
               "max DD", "Sharpe", "p50 µs", "p95 µs", "p99 µs", "cache hit", "store errors")


def run_rows(doc: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in doc["runs"]:
        lat = r["latency_us"] or {}
        cache = r["cache"] or {}
        rows.append((r["run_id"][:12], r["started_at"] or "–", r["status"], r["feed"],
                     fmt(r["bars"]), fmt(r["trades"]), pct(r["win_rate"]),
                     fmt(r["pnl"], ".2f"), pct(r["max_drawdown"]),
                     fmt((r["metrics"] or {}).get("sharpe"), ".3f"), fmt(lat.get("p50"), ".2f"),
                     fmt(lat.get("p95"), ".2f"), fmt(lat.get("p99"), ".2f"),
                     pct(cache.get("hit_rate")), fmt(r["store_errors"])))
    return rows


CHECK_HEADERS = ("rule", "threshold", "measured", "status", "runs", "note")


def check_rows(doc: Mapping[str, Any]) -> list[tuple[str, ...]]:
    return [(c["rule"], fmt(c["threshold"]), fmt(c["measured"]), c["status"],
             ", ".join(i[:12] for i in c["run_ids"]) or "–", c["note"]) for c in doc["checks"]]


def cache_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    tiers = sorted({t for c in doc["cache"] for t in c["tiers"]})
    rows = [(c["run_id"][:12], pct(c["hit_rate"]), *(pct(c["tiers"].get(t)) for t in tiers))
            for c in doc["cache"]]
    return ["run", "overall", *tiers], rows


VALIDATION_HEADERS = ("result", "profile", "stored (UTC)", "passed", "failed items")


def validation_rows(doc: Mapping[str, Any]) -> list[tuple[str, ...]]:
    return [(v["id"], v["profile"], v["created_at"] or "–", fmt(v["passed"]),
             ", ".join(v["failed"]) or "–") for v in doc["validations"]]


# --- Markdown ----------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def to_markdown(doc: Mapping[str, Any]) -> str:
    verdict = "PASSED: no threshold breached" if doc["passed"] else (
        f"BREACHED: {', '.join(c['rule'] for c in doc['breaches'])}")
    lines = [f"# {title(doc)}", "",
             f"Window {doc['window']['start']} to {doc['window']['end']} (runs by wall-clock "
             f"start), store `{doc['store']}`.", "", f"**{verdict}**", "",
             "## Summary", ""]
    lines += _md_table(("figure", "value"), summary_rows(doc))
    lines += ["## Alerts", "", *_md_table(CHECK_HEADERS, check_rows(doc))]
    lines += ["## Runs", ""]
    lines += _md_table(RUN_HEADERS, run_rows(doc)) if doc["runs"] else ["No runs.", ""]
    if doc["cache"]:
        headers, rows = cache_rows(doc)
        lines += ["## Cache hit rates", "", *_md_table(headers, rows)]
    lines += ["## Validations", ""]
    lines += (_md_table(VALIDATION_HEADERS, validation_rows(doc)) if doc["validations"]
              else ["No validation results in the window.", ""])
    lines += ["Charts (equity, drawdown, latency) are in the HTML report; every figure is in "
              "the JSON report.", ""]
    return "\n".join(lines)


# --- HTML --------------------------------------------------------------------------------

_CSS = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
        "th{background:#f3f3f3}.breach{color:#b00;font-weight:bold}.ok{color:#070}"
        ".chart{display:block;margin:0.5em 0 1em;border:1px solid #ddd}")


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                status_col: int | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = f' class="{escape(c.replace(" ", "-"))}"' if i == status_col else ""
            cells.append(f"<td{cls}>{escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def charts(doc: Mapping[str, Any]) -> list[str]:
    curve = doc["equity_curve"]
    lat = doc["latency"]
    return [
        line_chart("equity-chart", "equity index (runs chained in start order, 1.0 = start)",
                   [("equity", curve["equity"])], x_label="equity snapshots"),
        line_chart("drawdown-chart", "drawdown from the running peak (fraction)",
                   [("drawdown", curve["drawdown"])], x_label="equity snapshots", fill=True),
        line_chart("latency-chart", "tick latency per run (µs)",
                   [(p, [row[p] for row in lat]) for p in ("p50", "p95", "p99")],
                   x_label="runs in start order"),
    ]


def to_html(doc: Mapping[str, Any]) -> str:
    verdict_cls = "ok" if doc["passed"] else "breach"
    verdict = "passed: no threshold breached" if doc["passed"] else (
        f"breached: {', '.join(c['rule'] for c in doc['breaches'])}")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(title(doc))}</title><style>{_CSS}</style></head><body>",
             f"<h1>{escape(title(doc))}</h1>",
             f"<p>Window {escape(doc['window']['start'])} to {escape(doc['window']['end'])} "
             f"(runs by wall-clock start), store <code>{escape(doc['store'])}</code>.</p>",
             f'<p id="verdict" class="{verdict_cls}">{escape(verdict)}</p>',
             "<h2>Summary</h2>", _html_table(("figure", "value"), summary_rows(doc)),
             "<h2>Alerts</h2>", _html_table(CHECK_HEADERS, check_rows(doc), status_col=3),
             "<h2>Charts</h2>", *charts(doc), "<h2>Runs</h2>",
             _html_table(RUN_HEADERS, run_rows(doc)) if doc["runs"] else "<p>No runs.</p>"]
    if doc["cache"]:
        headers, rows = cache_rows(doc)
        parts += ["<h2>Cache hit rates</h2>", _html_table(headers, rows)]
    parts.append("<h2>Validations</h2>")
    parts.append(_html_table(VALIDATION_HEADERS, validation_rows(doc)) if doc["validations"]
                 else "<p>No validation results in the window.</p>")
    # The page needs no script; this one only marks that it rendered (checked in tests).
    parts.append('<script>document.documentElement.setAttribute("data-rendered", "yes");'
                 "</script></body></html>")
    return "\n".join(parts) + "\n"


# --- files -------------------------------------------------------------------------------

RENDERERS = {"md": to_markdown, "html": to_html, "json": to_json}


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(doc: Mapping[str, Any], directory: Path,
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for f in formats:
        path = directory / (base_name(doc) + _EXT[f])
        atomic_write(path, RENDERERS[f](doc))
        written.append(path)
    return written
