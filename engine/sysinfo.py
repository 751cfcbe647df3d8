"""Process measurements read from /proc, with no extra dependency."""

from __future__ import annotations

import os


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS:")
    return None if kib is None else kib / 1024.0


def peak_rss_mib() -> float | None:
    kib = _status_kib("VmHWM:")
    return None if kib is None else kib / 1024.0


def open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
