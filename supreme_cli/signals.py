"""Ctrl-C and SIGTERM for long commands, in one place: the first asks the work to stop in
order (finish the bar, flush, report); a second exits 130 at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from supreme_cli.exit_codes import ExitCode


def install_signal_handlers(request_stop: Callable[[], Any],
                            message: str = "stopping after this bar and flushing the store"
                            ) -> dict[int, Any]:
    """Install the handlers; returns the previous ones for `restore_signal_handlers`. Off
    the main thread (where Python delivers no signals) it installs nothing."""
    state = {"count": 0}

    def handler(signum: int, frame: Any) -> None:
        state["count"] += 1
        if state["count"] == 1 and signum in (signal.SIGINT, signal.SIGTERM):
            sys.stderr.write(f"\n{message} (Ctrl-C again to exit at once)\n")
            request_stop()
            return
        sys.stderr.write("\ninterrupted again: exiting now\n")
        sys.stderr.flush()
        os._exit(int(ExitCode.INTERRUPTED))

    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextmanager
def stop_on_signal(message: str = "stopping and writing the report") -> Iterator[threading.Event]:
    """An Event set by the first Ctrl-C or SIGTERM while the block runs; handlers restored
    after it."""
    stop = threading.Event()
    previous = install_signal_handlers(stop.set, message)
    try:
        yield stop
    finally:
        restore_signal_handlers(previous)
