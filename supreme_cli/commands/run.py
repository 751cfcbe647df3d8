"""`supreme run`: the engine's main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import ConfigError
from supreme_cli.options import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    ProfileOpt,
    VerboseOpt,
    resolve_for,
    use_globals,
)
from supreme_cli.output import Output
from supreme_cli.signals import install_signal_handlers, restore_signal_handlers

HELP = """Run the engine: feed → indicators → signals → risk → broker → store.

Feeds: sim (seeded simulator), replay (a candle file), exchange (live closed candles, polled
every ~INTERVAL_SECONDS or streamed with --stream). Paper mode is the default; --mode live
sends real market orders and needs --feed exchange, EXCHANGE_API_KEY/EXCHANGE_SECRET and
--confirm-live.

Ctrl-C or SIGTERM finishes the current bar, flushes the store, prints the summary and exits
0; a second Ctrl-C exits 130 at once."""
EPILOG = ("Examples: supreme run --bars 20000 · supreme run --feed replay --data "
          "ETH_USDT-1m.json --speed max --json · supreme run --duration 10m --speed 60x · "
          "supreme run --feed exchange --stream · supreme run --feed exchange --mode live "
          "--confirm-live")


class CliObserver:
    """Shows a run's progress on stderr: a Rich live view on a terminal, lines in verbose."""

    def __init__(self, out: Output, live: bool, stats_every: float = 0.0):
        self.out = out
        self.symbol = ""
        self._live: Any = None
        self._want_live = live
        self._stats_every = stats_every
        self._next_stats = 0.0

    def on_start(self, info: dict[str, Any]) -> None:
        self.symbol = info["symbol"]
        self.out.info(f"run {info['run_id']} · {info['symbol']} · {info['feed']} · "
                      f"{info['mode']} · store {info['store']}")
        if self._want_live:
            from rich.live import Live

            self._live = Live(console=self.out.err, refresh_per_second=4, transient=True)
            self._live.start()

    def on_progress(self, snapshot: dict[str, Any]) -> None:
        if self._live is not None:
            from supreme_cli.render import live_view

            self._live.update(live_view(snapshot, self.symbol))
        elif self._stats_every > 0:
            self._stats_line(snapshot)

    def _stats_line(self, snap: dict[str, Any]) -> None:
        """The periodic line containers' logs carry (`kubectl logs ... | grep
        cache_hit_rate`)."""
        import time

        from engine.sysinfo import rss_mib

        now = time.monotonic()
        if now < self._next_stats:
            return
        self._next_stats = now + self._stats_every
        self.out.event("info", "stats", symbol=self.symbol, ticks=snap["bars"],
                       latency_p95_us=snap["latency_us"]["p95"],
                       cache_hit_rate=snap.get("cache_hit_rate"), win_rate=snap["win_rate"],
                       trades=snap["trades"], pnl=snap["pnl"], rss_mib=rss_mib())

    def on_trade(self, trade: dict[str, Any]) -> None:
        self.out.info(f"trade {trade['id']} committed: pnl {trade['pnl']:+.4f} "
                      f"({trade['exit_reason']})")

    def on_warning(self, message: str) -> None:
        self.out.warn(message)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _serve(engine_run: Any, resolved: Any, out: Output) -> Any:
    """The metrics and API server, when a port is configured (before the first bar, so a
    scrape right after start sees the run)."""
    port = resolved["metrics_port"]
    if port is None:
        return None
    from engine.observability.server import EngineServer

    server = EngineServer(engine_run, port, resolved["metrics_addr"], resolved["api_token"])
    out.event("info", "serving", url=server.url, endpoints="/metrics /health /ready "
                                                           "/api/cache/reset")
    return server


def _exchange_spec(resolved: Any, endpoint: str | None) -> Any:
    """What to connect to. Keys are given to the adapter in live mode only: paper runs read
    public market data."""
    from engine.exchange.adapter import ExchangeSpec
    from engine.exchange.endpoints import endpoint_overrides

    exchange_id = resolved["exchange.id"]
    overrides = endpoint_overrides(exchange_id, endpoint) if endpoint else {}
    live = resolved["mode"] == "live"
    return ExchangeSpec(
        exchange_id=exchange_id,
        api_key=resolved["exchange.api_key"] if live else None,
        secret=resolved["exchange.secret"] if live else None,
        sandbox=resolved["exchange.sandbox"] and not endpoint, overrides=overrides)


def run(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Option(help="ETH-USDT, ETH/USDT or ETHUSDT.")] = None,
    feed: Annotated[str | None, typer.Option(help="sim, replay or exchange.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="File to replay: freqtrade JSON, Binance kline CSV or zip, CSV.")] = None,
    mode: Annotated[str | None, typer.Option(
        help="paper, backtest, or live (real orders: --feed exchange, keys, --confirm-live).")]
    = None,
    duration: Annotated[str | None, typer.Option(
        help="Wall-clock limit: 600, 30s, 10m, 8h.")] = None,
    bars: Annotated[int | None, typer.Option(help="Stop after N bars.")] = None,
    speed: Annotated[str | None, typer.Option(help="max, realtime or Nx (e.g. 60x).")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    sim_model: Annotated[str | None, typer.Option(
        "--sim-model", help="calibrated (fitted on real ETH candles) or random_walk "
                            "(zero edge).")] = None,
    policy: Annotated[str | None, typer.Option(
        help="Corrupt replay rows: fail, skip or fill. Gaps are always reported and bridged.")]
    = None,
    exchange: Annotated[str | None, typer.Option(
        "--exchange", help="ccxt exchange id for --feed exchange (default binance).")] = None,
    timeframe: Annotated[str | None, typer.Option(
        help="Candle timeframe for --feed exchange: 1m (default), 5m, 1h, ...")] = None,
    stream: Annotated[bool | None, typer.Option(
        "--stream/--no-stream",
        help="--feed exchange: websocket candles, REST polling while the stream is down.")]
    = None,
    confirm_live: Annotated[bool, typer.Option(
        "--confirm-live", help="Confirm that --mode live may place real orders.")] = False,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", metavar="URL",
        help="Send the exchange's REST and websocket traffic to this base URL (a mirror or "
             "a test server such as the fake exchange; Binance API layout).")] = None,
    cache: Annotated[bool | None, typer.Option(
        "--cache/--no-cache",
        help="Use the tiered cache: L1, L2 when REDIS_URL is set, L3 in the store.")] = None,
    require_redis: Annotated[bool | None, typer.Option(
        "--require-redis", help="Exit 5 instead of starting degraded when Redis is down.")]
    = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Serve /metrics, /health, /ready and POST /api/cache/reset on this port.")]
    = None,
    metrics_addr: Annotated[str | None, typer.Option(
        "--metrics-addr", help="Bind address (default 127.0.0.1; others need "
                               "SUPREME_API_TOKEN).")] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="text (default) or json lines on stderr.")] = None,
    db: DbOpt = None,
    live: Annotated[bool, typer.Option(help="Show the live view on a terminal.")] = True,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.pipeline import Run, check_live, spec_from_resolved

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    if bars is not None and bars < 1:
        raise ConfigError("--bars must be at least 1")
    flags = {"symbol": symbol, "feed": feed, "data_file": str(data) if data else None,
             "mode": mode, "duration": duration, "bars": bars, "speed": speed, "seed": seed,
             "sim_model": sim_model,
             "replay_policy": policy, "db": db, "exchange.id": exchange,
             "timeframe": timeframe, "stream": stream, "cache.enabled": cache,
             "cache.require_redis": require_redis, "metrics_port": metrics_port,
             "metrics_addr": metrics_addr, "log_format": log_format}
    resolved = resolve_for(g, out, flags)
    feed_name, mode_name = resolved["feed"], resolved["mode"]
    exchange_spec = _exchange_spec(resolved, endpoint) if feed_name == "exchange" else None
    if endpoint and feed_name != "exchange":
        raise ConfigError("--endpoint applies to --feed exchange only")
    if mode_name == "live" and feed_name != "exchange":
        raise ConfigError("--mode live trades through the exchange layer on live candles: it "
                          "needs --feed exchange, API keys (EXCHANGE_API_KEY, "
                          "EXCHANGE_SECRET) and --confirm-live; no order was sent")
    if feed_name == "exchange" and resolved.sources["speed"] != "default" \
            and resolved["speed"] != "max":
        out.warn("--speed does not apply to --feed exchange: candles come in real time "
                 "(polled every ~INTERVAL_SECONDS, or streamed)")
    spec = spec_from_resolved(resolved, exchange=exchange_spec, live_confirmed=confirm_live)
    check_live(spec)  # before any connection: no keys or no --confirm-live → exit 2
    out.log_format = resolved["log_format"]
    show_live = live and out.err.is_terminal and out.log_format == "text"
    observer = CliObserver(out, live=show_live, stats_every=resolved["stats_every"])
    engine_run = Run(spec, observer)
    server = _serve(engine_run, resolved, out)
    previous = install_signal_handlers(engine_run.request_stop)
    try:
        summary = engine_run.execute()
    finally:
        observer.close()
        if server is not None:
            server.close()
        restore_signal_handlers(previous)
    if out.json_mode:
        out.emit(summary)
    else:
        from supreme_cli.render import summary_table

        out.result(summary_table(summary))
