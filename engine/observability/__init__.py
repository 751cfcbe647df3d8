"""What a running engine serves: Prometheus metrics, health, readiness and its control API
(engine/observability/server.py), built from a Run's live objects at scrape time
(engine/observability/collector.py). prometheus-client is imported only when a run serves
metrics. Names and meanings: docs/METRICS.md."""
