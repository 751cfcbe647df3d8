"""The soak test behind `supreme stress`: real runs at a sustained rate for a long time.

The soak drives real `engine.pipeline.Run`s on the simulator, one after another, each a
*segment* of at most `segment_s` seconds (new seed per segment, so the bars differ). Pacing
uses the pipeline's own: `interval_s=1` and `speed=rate`, so the run waits a jittered
1/rate s between bars, less a guessed per-bar cost (`initial_speed`); after each segment
the speed is corrected by the measured rate (the first segment is at most `CALIBRATE_S`).

A sampler on the calling thread closes a *window* every `checkpoint_every_s` seconds and at
the end of every segment: bars and throughput, the window's own latency histogram (the
difference of two snapshots of the run's histogram) and its p50/p95/p99, RSS, the
tracemalloc heap (only with `heap=True`: tracing every allocation slows the engine; without
it `allocated_blocks`, `sys.getallocatedblocks()`, is the cheap stand-in), open file
descriptors, sockets among them (connections) and cumulative errors (store writer errors,
cache tier errors, segments that raised, checkpoints that failed). After every window the
whole state is saved in the store's `stats_results` table as kind `stress_checkpoint`
under the stress id (`stress-<hex>`): no schema change. `resume=True` continues the newest
checkpoint whose status is not `finished` (a killed soak stays `running`, a signalled one
`interrupted`) from its elapsed stress time to its original duration, with its rate and
seed; the work after its last checkpoint is lost (at most one window).

It always ends on time: the last segment's duration ends at the hard deadline (start +
remaining duration), every wait is bounded, and a segment still running `GRACE_S` after the
deadline is abandoned (its thread is a daemon). `stop` (SIGTERM in the CLI) asks the
current run to stop; the result is then a partial report with status `interrupted`.
The analysis and the verdict's thresholds are in `engine.validation.soak_windows`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, SupremeError
from engine.sysinfo import rss_mib
from engine.validation.soak_windows import analyze, quantile_us, sparse_diff

if TYPE_CHECKING:
    from engine.cache import CacheSettings
    from engine.pipeline import Run

CHECKPOINT_KIND = "stress_checkpoint"
REPORT_KIND = "stress_report"
SEGMENT_S = 600.0
GRACE_S = 5.0  # how long after the deadline a stopping segment may take to finish
POLL_S = 0.25
CALIBRATE_S = 30.0  # the first segment's length at most: its measured rate corrects pacing
BAR_OVERHEAD_S = 100e-6  # first guess of a paced bar's cost beyond the wait
MAX_NOTES = 20
ProgressFn = Callable[[str, float, float], None]


def initial_speed(rate: float) -> float:
    """The pipeline speed (with `interval_s=1`) expected to give `rate` bars/s: its wait is
    1/speed on average, and each bar also costs processing and wake-up time
    (`BAR_OVERHEAD_S`, corrected by measurement after every segment). 0: unpaced."""
    if rate <= 0:
        return 0.0
    budget = 1.0 / rate - BAR_OVERHEAD_S
    return min(4.0 * rate, 1.0 / budget) if budget > 0.25 / rate else 4.0 * rate


def fd_counts() -> tuple[int | None, int | None]:
    """Open file descriptors and, among them, sockets (TCP, Unix: the connections)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None, None
    sockets = 0
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
        except OSError:
            continue  # closed meanwhile (the listdir's own descriptor among them)
    return len(names), sockets


def _run_errors(run: Run) -> int:
    view = run.view
    if view is None:
        return 0
    errors = int(view.writer.stats.errors)
    cache = view.cache
    if cache is not None:
        for tier in (cache.l2, cache.l3):
            if tier is not None:
                errors += int(tier.stats.errors) + int(tier.stats.write_errors)
    return errors


def find_unfinished(store: Any) -> dict[str, Any] | None:
    """The newest stress checkpoint whose soak did not finish, or None."""
    best: dict[str, Any] | None = None
    for _run_id, kind, _created, doc in store.stats_since(0):
        if kind != CHECKPOINT_KIND or doc.get("status") == "finished":
            continue
        if best is None or doc.get("updated_at_ms", 0) >= best.get("updated_at_ms", 0):
            best = doc
    return best


class _Soak:
    def __init__(self, store: Any, state: dict[str, Any], *, data_dir: Path,
                 store_url: str | None, checkpoint_every_s: float, segment_s: float,
                 heap: bool, cache: CacheSettings | None, progress: ProgressFn | None,
                 stop: threading.Event, notes: list[str]):
        self.store = store
        self.state = state
        self.data_dir = data_dir
        self.store_url = store_url
        self.window_s = checkpoint_every_s
        self.segment_s = segment_s
        self.heap = heap
        self.cache = cache
        self.progress = progress
        self.stop = stop
        self.notes = notes
        self.offset = float(state["elapsed_s"])
        self.wall0 = time.monotonic()
        self.deadline = self.wall0 + max(0.0, state["duration_s"] - self.offset)
        self.rate = float(state["rate"])
        self.speed = initial_speed(self.rate)
        self.calibrated = False
        self.interrupted = False
        self.abandoned = False
        # the window being filled
        self._win_start = self.wall0
        self._prev_counts: list[int] | None = None
        self._prev_run: Run | None = None

    # --- time -------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.offset + (time.monotonic() - self.wall0)

    # --- the loop ---------------------------------------------------------------------

    def execute(self) -> None:
        while not self.stop.is_set():
            left = self.deadline - time.monotonic()
            if left < 0.05:
                break
            # the first segment is short, so the pacing correction comes early
            first = self.segment_s if self.calibrated else min(self.segment_s, CALIBRATE_S)
            self._segment(min(first, left))
            if self.abandoned:
                break
        if self.stop.is_set():
            self.interrupted = True

    def _segment(self, duration: float) -> None:
        from engine.pipeline import Run, RunSpec, WarningRecorder

        st = self.state
        index = int(st["segments_done"])
        spec = RunSpec(symbol="ETH-USDT", feed="sim", seed=int(st["seed"]) + index,
                       duration_s=duration, speed=self.speed, interval_s=1.0,
                       store_url=self.store_url, data_dir=self.data_dir, cache=self.cache,
                       config={"stress_id": st["stress_id"], "segment": index})
        run = Run(spec, WarningRecorder(self.notes, limit=MAX_NOTES))
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["summary"] = run.execute()
            except BaseException as exc:  # counted and reported, never raised
                outcome["error"] = exc

        worker = threading.Thread(target=target, name=f"stress-segment-{index}", daemon=True)
        worker.start()
        stop_asked = False
        next_window = self._win_start + self.window_s
        while worker.is_alive():
            now = time.monotonic()
            if not stop_asked and (self.stop.is_set() or now >= self.deadline):
                run.request_stop()  # the run's own duration normally ends it first
                stop_asked = True
            if now >= self.deadline + GRACE_S:
                self.abandoned = True
                self._note(f"segment {index} did not stop within {GRACE_S:g} s of the "
                           "deadline: abandoned")
                break
            if now >= next_window:
                self._close_window(run, index, extra_errors=0)
                self._checkpoint("running")
                next_window = self._win_start + self.window_s
            self._report(run, index)
            wait = min(POLL_S, max(0.0, next_window - now) + 0.001)
            if not stop_asked:
                wait = min(wait, max(0.0, self.deadline - now) + 0.001)
            worker.join(wait)  # a stop request is seen within POLL_S
        errors = 0
        if "error" in outcome:
            errors = 1
            exc = outcome["error"]
            self._note(f"segment {index} failed: {type(exc).__name__}: {exc}")
        self._close_window(run, index, extra_errors=errors)
        if not self.abandoned:
            st["errors_base"] = int(st["errors_base"]) + _run_errors(run) + errors
            st["segments_done"] = index + 1
            self._prev_counts = None
            self._prev_run = None
        self._checkpoint("running")
        summary = outcome.get("summary")
        wall = summary.get("wall_s") if summary is not None else None
        if summary is not None and self.rate > 0 and wall and wall > 1.0 \
                and summary["bars"] > 10:
            factor = min(2.0, max(0.5, self.rate / (summary["bars"] / wall)))
            self.speed = min(4.0 * self.rate, max(self.rate, self.speed * factor))
            self.calibrated = True
        if "error" in outcome and not self.stop.is_set():
            self.stop.wait(min(1.0, max(0.0, self.deadline - time.monotonic())))

    # --- windows and checkpoints --------------------------------------------------------

    def _close_window(self, run: Run, segment: int, extra_errors: int) -> None:
        now = time.monotonic()
        view = run.view
        hist: list[list[int]] = []
        if view is not None:
            counts = list(view.hist.counts)
            prev = self._prev_counts if self._prev_run is run else None
            hist = sparse_diff(counts, prev)
            self._prev_counts, self._prev_run = counts, run
        bars = sum(c for _, c in hist)
        dur = now - self._win_start
        fds, conns = fd_counts()
        heap_mib = None
        if self.heap:
            import tracemalloc

            heap_mib = tracemalloc.get_traced_memory()[0] / 2**20
        errors = int(self.state["errors_base"]) + _run_errors(run) + extra_errors
        self.state["windows"].append({
            "t_s": self.offset + (now - self.wall0), "dur_s": dur, "segment": segment,
            "bars": bars, "throughput_per_s": bars / dur if dur > 0 else 0.0,
            "p50_us": quantile_us(hist, 0.50), "p95_us": quantile_us(hist, 0.95),
            "p99_us": quantile_us(hist, 0.99), "hist": hist,
            "rss_mib": rss_mib(), "heap_mib": heap_mib,
            "allocated_blocks": sys.getallocatedblocks(),
            "fds": fds, "connections": conns, "errors": errors,
        })
        self._win_start = now

    def _checkpoint(self, status: str) -> None:
        st = self.state
        st["status"] = status
        st["elapsed_s"] = min(float(st["duration_s"]), self.elapsed())
        st["updated_at_ms"] = int(time.time() * 1000)
        try:
            self.store.save_stats(st["stress_id"], CHECKPOINT_KIND, st)
        except SupremeError as exc:
            st["errors_base"] = int(st["errors_base"]) + 1
            self._note(f"checkpoint failed: {exc}")

    def _report(self, run: Run, segment: int) -> None:
        if self.progress is None:
            return
        view = run.view
        label = f"segment {segment + 1}"
        if view is not None and self._prev_run is run and self._prev_counts is not None:
            bars = view.hist.count - sum(self._prev_counts)
            dur = time.monotonic() - self._win_start
            if dur > 0:
                label += f" · {bars / dur:.0f} bars/s"
        rss = rss_mib()
        if rss is not None:
            label += f" · RSS {rss:.0f} MiB"
        self.progress(label, min(self.elapsed(), float(self.state["duration_s"])),
                      float(self.state["duration_s"]))

    def _note(self, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)


def run_stress(*, duration_s: float, rate: float, data_dir: Path, store_url: str | None = None,
               resume: bool = False, checkpoint_every_s: float = 60.0, seed: int = 0,
               progress: ProgressFn | None = None, stop: threading.Event | None = None,
               segment_s: float = SEGMENT_S, heap: bool = False,
               cache: CacheSettings | None = None) -> dict[str, Any]:
    """Soak the engine for `duration_s` seconds at `rate` bars/s (0: as fast as it goes).

    Returns the report: stress_id, status (finished|interrupted), elapsed_s, duration_s,
    windows (without their histograms), latency_drift, rss_slope_mib_per_h,
    heap_slope_mib_per_h (None without `heap`), fd_growth, connections_growth, errors,
    throughput_per_s, verdict (pass|fail), reasons, thresholds, notes."""
    from engine.store import open_store

    if duration_s <= 0:
        raise ConfigError("--duration must be positive")
    if rate < 0:
        raise ConfigError("--rate must be positive (or 0: as fast as possible)")
    if checkpoint_every_s <= 0 or segment_s <= 0:
        raise ConfigError("--checkpoint-every and the segment length must be positive")
    started = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    notes: list[str] = []
    store = open_store(store_url, data_dir)
    tracing = False
    try:
        previous = find_unfinished(store) if resume else None
        if previous is not None:
            state = previous
            state.setdefault("resumes", 0)
            state["resumes"] += 1
            if abs(float(state["duration_s"]) - duration_s) > 1e-9 \
                    or abs(float(state["rate"]) - rate) > 1e-9:
                notes.append(f"resumed {state['stress_id']} with its own duration "
                             f"{state['duration_s']:g} s and rate {state['rate']:g}/s")
        else:
            if resume:
                notes.append("no unfinished stress run to resume: started a new one")
            state = {"version": 1, "stress_id": f"stress-{uuid.uuid4().hex[:12]}",
                     "status": "running", "duration_s": float(duration_s),
                     "rate": float(rate), "seed": int(seed), "elapsed_s": 0.0,
                     "segments_done": 0, "errors_base": 0, "resumes": 0,
                     "started_at_ms": int(time.time() * 1000), "heap": heap,
                     "windows": []}
        if heap:
            import tracemalloc

            if not tracemalloc.is_tracing():
                tracemalloc.start()
                tracing = True
        soak = _Soak(store, state, data_dir=data_dir, store_url=store_url,
                     checkpoint_every_s=checkpoint_every_s, segment_s=segment_s, heap=heap,
                     cache=cache, progress=progress, stop=stop, notes=notes)
        soak.execute()
        done = soak.elapsed() >= float(state["duration_s"]) - 0.05
        status = "finished" if done and not soak.interrupted else "interrupted"
        soak._checkpoint(status)
        if status == "finished":
            state["elapsed_s"] = float(state["duration_s"])
        report = analyze(state["windows"], rate=float(state["rate"]) or None,
                         errors=int(state["errors_base"]))
        result: dict[str, Any] = {
            "stress_id": state["stress_id"], "status": status,
            "elapsed_s": float(state["elapsed_s"]), "duration_s": float(state["duration_s"]),
            "rate": float(state["rate"]), "seed": int(state["seed"]),
            "segments": int(state["segments_done"]), "resumes": int(state["resumes"]),
            "checkpoint_every_s": checkpoint_every_s, "heap_traced": heap,
            "wall_s": time.monotonic() - started,
            **report,
            "windows": [{k: v for k, v in w.items() if k != "hist"}
                        for w in state["windows"]],
            "notes": notes,
        }
        try:
            store.save_stats(state["stress_id"], REPORT_KIND,
                             {k: v for k, v in result.items() if k != "windows"})
        except SupremeError as exc:
            notes.append(f"saving the report failed: {exc}")
        return result
    finally:
        if tracing:
            import tracemalloc

            tracemalloc.stop()
        store.close()
