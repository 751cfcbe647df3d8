"""Statistics of runs: metrics, significance tests, walk-forward."""
