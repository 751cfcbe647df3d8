"""Order execution: the paper broker now; the live broker arrives with the exchange layer."""
