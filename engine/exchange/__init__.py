"""The exchange layer: one adapter over ccxt, with retries, a circuit breaker and
idempotent orders. ccxt is imported only inside the adapter, where an exchange is used."""
