"""`supreme data`: market data for the replay feed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import ConfigError
from supreme_cli.options import (
    ConfigOpt,
    JsonOpt,
    ProfileOpt,
    VerboseOpt,
    resolve_for,
    use_globals,
)
from supreme_cli.output import Output

app = typer.Typer(help="Market data: download candles to replay.", no_args_is_help=True)

DOWNLOAD_EPILOG = ("Example: supreme data download --symbol ETH-USDT --timeframe 1m "
                   "--since 2024-01-01 --until 2024-02-01")
_MIN_DATE = datetime(2009, 1, 1, tzinfo=UTC)
_DATE_HELP = "an ISO date (2024-01-01) or date-time (2024-01-01T12:30, UTC unless it has an offset)"


def parse_when(text: str, option: str, future_ok: bool = False) -> int:
    """Epoch milliseconds of an ISO date or date-time; naive values are UTC."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            when = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise ConfigError(f"invalid {option} {shown!r}: expected {_DATE_HELP}") from None
    if when < _MIN_DATE:
        raise ConfigError(f"invalid {option} {raw!r}: before 2009-01-01")
    if not future_ok and when > datetime.now(UTC):
        raise ConfigError(f"invalid {option} {raw!r}: in the future")
    return int(when.timestamp() * 1000)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("download", epilog=DOWNLOAD_EPILOG)
def download(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help=f"First candle: {_DATE_HELP}.")],
    until: Annotated[str | None, typer.Option(
        help="End (exclusive), same forms as --since; default: now (closed candles only).")]
    = None,
    symbol: Annotated[str | None, typer.Option(help="ETH-USDT, ETH/USDT or ETHUSDT.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m (default), 5m, 1h, 1d, ...")]
    = None,
    exchange: Annotated[str | None, typer.Option(
        "--exchange", help="ccxt exchange id (default binance).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Target file (freqtrade JSON). Default: "
        "<data dir>/data/<exchange>/<BASE>_<QUOTE>-<timeframe>.json.")] = None,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", metavar="URL",
        help="Send the requests to this base URL (a mirror or a test server; Binance API "
             "layout).")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Download closed OHLCV candles into a file `supreme run --feed replay` reads.

    Resumable: when the file exists (same symbol and timeframe) the download continues
    after its last candle. Writes are atomic and checkpointed, so Ctrl-C loses at most a few
    pages. Gaps in the exchange's own data are reported, not invented.
    """
    from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec
    from engine.exchange.download import default_path, download_ohlcv
    from engine.exchange.endpoints import endpoint_overrides

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    resolved = resolve_for(g, out, {"symbol": symbol, "exchange.id": exchange,
                                    "timeframe": timeframe})
    since_ms = parse_when(since, "--since")
    until_ms = parse_when(until, "--until", future_ok=True) if until is not None else None
    if until_ms is not None and until_ms <= since_ms:
        raise ConfigError(f"--until {until} is not after --since {since}")
    exchange_id, sym, tf = resolved["exchange.id"], resolved["symbol"], resolved["timeframe"]
    path = output if output is not None else default_path(resolved.data_dir, exchange_id, sym,
                                                          tf)
    overrides = endpoint_overrides(exchange_id, endpoint) if endpoint else {}
    spec = ExchangeSpec(exchange_id=exchange_id, sandbox=resolved["exchange.sandbox"]
                        and not endpoint, overrides=overrides)
    out.info(f"downloading {sym} {tf} from {exchange_id} since {_iso(since_ms)} into {path}")
    with ExchangeAdapter(spec) as adapter, _progress(out, f"{sym} {tf}") as progress:
        result = download_ohlcv(adapter, sym, tf, since_ms, until_ms, path, progress)
    doc = {
        "path": str(result.path), "exchange": exchange_id, "symbol": sym, "timeframe": tf,
        "rows": result.rows, "added": result.added,
        "gaps": len(result.gaps),
        "missing_candles": sum(gap.missing for gap in result.gaps),
        "duplicates_dropped": result.duplicates_dropped,
        "resumed_from": _iso(result.resumed_from_ms), "resumed_from_ms": result.resumed_from_ms,
        "requests": result.requests, "first": _iso(result.first_ts),
        "last": _iso(result.last_ts), "first_ts": result.first_ts, "last_ts": result.last_ts,
        "capped": result.capped,
        "hint": f"supreme run --feed replay --data {result.path}",
    }
    if out.json_mode:
        out.emit(doc)
        return
    _render(out, doc)


class _progress:
    """A Rich progress bar on stderr (none with --json); the callable download_ohlcv
    reports to."""

    def __init__(self, out: Output, label: str) -> None:
        self.out = out
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _progress:
        if not self.out.json_mode:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TextColumn("{task.completed:,} candles"),
                                 TimeRemainingColumn(), console=self.out.err, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _render(out: Output, doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{doc['symbol']} {doc['timeframe']} from {doc['exchange']}",
                  title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("file", doc["path"]),
        ("candles", f"{doc['rows']:,} ({doc['first']} → {doc['last']})"),
        ("added", f"{doc['added']:,}"),
        ("gaps", f"{doc['gaps']} ({doc['missing_candles']:,} candles missing)"),
        ("duplicates dropped", f"{doc['duplicates_dropped']:,}"),
        ("resumed from", doc["resumed_from"] or "(fresh download)"),
        ("requests", f"{doc['requests']:,}" + (" (request cap reached: run again)"
                                               if doc["capped"] else "")),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    out.result(table)
    out.result(f"replay it: {doc['hint']}")
