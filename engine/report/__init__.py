"""`supreme report --daily`: the day's runs, trades, statistics, latency, cache, validations
and alert thresholds, from the store alone (`daily`), rendered to files (`render`)."""

from engine.report.daily import DEFAULT_ALERTS, build_daily
from engine.report.render import write_reports

__all__ = ["DEFAULT_ALERTS", "build_daily", "write_reports"]
