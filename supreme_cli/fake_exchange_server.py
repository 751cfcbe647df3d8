"""Serve the packaged fake Binance exchange on 127.0.0.1 until Ctrl-C (a developer tool).

    python -m supreme_cli.fake_exchange_server --data ../shared/data/ETH_USDT-1m.json

The server lives in engine.testing.fake_exchange; this entry point is the part that prints.
"""

from __future__ import annotations

import time

from engine.testing.fake_exchange import FakeExchange


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m supreme_cli.fake_exchange_server",
        description="Serve a fake Binance spot exchange on 127.0.0.1 until Ctrl-C.")
    ap.add_argument("--data", help="candle file (any format load_series reads); "
                    "default: generated 1m candles")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ap.add_argument("--symbol", default="ETH-USDT")
    ap.add_argument("--start", type=int, default=None,
                    help="index of the current candle (negative: from the end)")
    ap.add_argument("--ws-interval", type=float, default=1.0,
                    help="seconds per replayed candle / websocket push")
    ap.add_argument("--retime", action="store_true",
                    help="shift timestamps so the current candle closes now")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--api-secret", default=None)
    args = ap.parse_args(argv)
    fx = FakeExchange(args.data, symbol=args.symbol, api_key=args.api_key,
                      api_secret=args.api_secret, port=args.port, start=args.start,
                      ws_interval_s=args.ws_interval, retime=args.retime)
    with fx:
        print(fx.base_url, flush=True)
        print(f"rest {fx.rest_url}  ws {fx.ws_url}  symbol {fx.symbol_id} "
              f"interval {fx.interval}  candles {fx.n_candles}  key {fx.api_key!r}",
              flush=True)
        try:
            while fx.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
