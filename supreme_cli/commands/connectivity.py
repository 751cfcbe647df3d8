"""`supreme connectivity`: can this machine reach the exchanges, and how fast?"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from supreme_cli.exit_codes import ExitCode
from supreme_cli.options import ConfigOpt, JsonOpt, ProfileOpt, VerboseOpt, resolve_for, use_globals

if TYPE_CHECKING:
    from engine.exchange.connectivity import ConnectivityReport, ExchangeReport
    from supreme_cli.output import Output

HELP = """Check the exchanges' endpoints: server time and clock skew, markets, the symbol,
ticker, order book and OHLCV; balance and open orders when EXCHANGE_API_KEY and
EXCHANGE_SECRET are set (on the configured exchange.id, whose account they are); the
websocket with --websocket.

Exchanges are checked concurrently and the command returns within --timeout, DNS included,
even when the network is black-holed. Exit 0 when every endpoint checked worked, 7
(degraded) when some failed, 8 (down) when nothing was reachable."""
EPILOG = ("Example: supreme connectivity --exchange binance,kraken,coinbase --timeout 5s "
          "· supreme connectivity --websocket --json "
          "· supreme connectivity --endpoint binance=http://127.0.0.1:8080")

CODES = {"ok": ExitCode.OK, "degraded": ExitCode.DEGRADED, "down": ExitCode.DOWN}
_STYLES = {"ok": "green", "failed": "red", "skipped": "dim", "degraded": "yellow",
           "down": "red"}


def connectivity(
    ctx: typer.Context,
    exchange: Annotated[list[str] | None, typer.Option(
        "--exchange", "-e", metavar="IDS",
        help="ccxt exchange ids, comma-separated or repeated (default: exchange.id, "
        "binance).")] = None,
    symbol: Annotated[str | None, typer.Option(
        metavar="SYMBOL",
        help="Market to check: ETH-USDT, ETH/USDT or ETHUSDT (default: SYMBOL_FOCUS).")] = None,
    timeout: Annotated[str, typer.Option(
        metavar="DURATION",
        help="Hard deadline for the whole check, DNS included: 10, 3s, 1m.")] = "10s",
    websocket: Annotated[bool, typer.Option(
        "--websocket", help="Also check the websocket (ccxt.pro watch_ticker and "
        "watch_ohlcv).")] = False,
    endpoint: Annotated[list[str] | None, typer.Option(
        "--endpoint", metavar="ID=URL",
        help="Point an exchange at a mirror or test server speaking the Binance spot API, "
        "e.g. binance=http://127.0.0.1:8080 (binance and binanceus only; replaces the "
        "sandbox). Repeatable.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    started = time.monotonic()
    from engine.exchange.connectivity import (
        DEFAULT_IDS,
        check_exchanges,
        parse_endpoints,
        parse_exchange_ids,
    )
    from engine.parsing import parse_duration

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    deadline_s = parse_duration(timeout, "--timeout")
    endpoints = parse_endpoints(endpoint or [])
    resolved = resolve_for(g, out, {"symbol": symbol})
    account = resolved.values.get("exchange.id") or DEFAULT_IDS[0]
    ids = parse_exchange_ids(exchange or [account])
    api_key, secret = resolved["exchange.api_key"], resolved["exchange.secret"]
    keys = {account: (api_key, secret)} if api_key or secret else None
    out.info(f"checking {', '.join(ids)} for {resolved['symbol']} within {deadline_s:g} s"
             + (f" (keys: {account})" if keys else "")
             + (" with the websocket" if websocket else ""))
    report = check_exchanges(ids, resolved["symbol"], deadline_s, keys=keys,
                             websocket=websocket, endpoints=endpoints,
                             sandbox=resolved["exchange.sandbox"], started=started)
    code = CODES[report.verdict]
    if out.json_mode:
        out.emit({**report.as_dict(), "exit_code": int(code)})
    else:
        _render(out, report)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _latency(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _render(out: Output, report: ConnectivityReport) -> None:
    for ex in report.exchanges:
        out.result(_table(out, ex))
    fully = sum(1 for ex in report.exchanges if ex.verdict == "ok")
    style = _STYLES.get(report.verdict, "green")
    out.result(f"[{style}]{report.verdict}[/]: {fully} of {len(report.exchanges)} exchanges "
               f"fully reachable, {report.symbol}, checked in {report.elapsed_s:.2f} s "
               f"(deadline {report.deadline_s:g} s)")


def _table(out: Output, ex: ExchangeReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    title = f"{ex.exchange_id} · [{_STYLES.get(ex.verdict, 'green')}]{ex.verdict}[/]"
    if ex.url:
        title += f" · {_escape(out.scrub(ex.url))}" + (" (sandbox)" if ex.sandbox else "")
    if ex.skew_ms is not None:
        title += f" · clock skew {ex.skew_ms:+.0f} ms"
    if ex.dns is not None and ex.dns.status == "ok" and ex.dns.latency_s is not None:
        title += f" · DNS {_latency(ex.dns.latency_s)}"
    table = Table(title=title, title_justify="left")
    for column, justify in (("endpoint", "left"), ("status", "left"), ("latency", "right"),
                            ("detail", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for e in ex.endpoints:
        detail = e.reason or e.note or ""
        table.add_row(e.name, Text(e.status, style=_STYLES.get(e.status, "")),
                      _latency(e.latency_s), Text(out.scrub(detail)))
    return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
