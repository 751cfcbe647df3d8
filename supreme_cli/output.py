"""Where everything the CLI shows goes: stdout for results, stderr for the rest.

With --json, stdout receives exactly one JSON document (`emit`) and nothing else; tables,
warnings, progress and live views go to stderr or are skipped. Every line of text passes
through `scrub`, which removes the values of configured secrets as a last line of defence.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def jsonable(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by null; keep other numbers unrounded."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass
class Output:
    json_mode: bool = False
    verbose: bool = False
    log_format: str = "text"  # "json": warnings and log events as one JSON object a line
    secrets: list[str] = field(default_factory=list)
    emitted: bool = False

    _out: Any = None
    _err: Any = None

    @property
    def out(self) -> Any:
        """Rich console on stdout, built on first use so `--help` never imports rich.console."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        return self._out

    @property
    def err(self) -> Any:
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        return self._err

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def emit(self, document: dict[str, Any]) -> None:
        """Write the command's single JSON document to stdout."""
        if self.emitted:
            raise RuntimeError("a JSON document was already written for this command")
        self.emitted = True
        text = json.dumps(jsonable(document), allow_nan=False, default=str)
        sys.stdout.write(self.scrub(text) + "\n")
        sys.stdout.flush()

    def result(self, renderable: Any) -> None:
        """Human output of a result: stdout normally, stderr when stdout carries JSON."""
        (self.err if self.json_mode else self.out).print(renderable)

    def info(self, message: str) -> None:
        if self.verbose:
            self.err.print(self.scrub(message), markup=False)

    def warn(self, message: str) -> None:
        if self.log_format == "json":
            self.event("warning", message)
            return
        self.err.print("[yellow]warning:[/] " + _escape(self.scrub(message)))

    def event(self, level: str, message: str, **fields: Any) -> None:
        """One log line on stderr: `2026-01-01T00:00:00Z info stats ticks=3 ...` or, with
        --log-format json, a JSON object; secrets scrubbed either way."""
        import datetime as dt

        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if self.log_format == "json":
            line = json.dumps(jsonable({"ts": stamp, "level": level, "msg": message,
                                        **fields}), allow_nan=False, default=str)
        else:
            pairs = " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
            line = f"{stamp} {level} {message}" + (f" {pairs}" if pairs else "")
        sys.stderr.write(self.scrub(line) + "\n")
        sys.stderr.flush()

    def error(self, message: str) -> None:
        self.err.print("[red]error:[/] " + _escape(self.scrub(message)))

    @contextmanager
    def progress(self, title: str) -> Iterator[Callable[[str, int, int], None]]:
        """A progress bar on stderr when it is a terminal; yields `advance(label, done,
        total)`. Off a terminal (cron, pipes, tests) it draws nothing."""
        if not self.err.is_terminal:
            yield lambda label, done, total: None
            return
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      console=self.err, transient=True) as bar:
            task = bar.add_task(title, total=None)

            def advance(label: str, done: int, total: int) -> None:
                bar.update(task, description=f"{title}: {label}", completed=done, total=total)

            yield advance


def _logfmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text) else text


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


_current = Output()


def current() -> Output:
    return _current


def configure(json_mode: bool, verbose: bool) -> Output:
    global _current
    _current = Output(json_mode=json_mode, verbose=verbose)
    return _current
