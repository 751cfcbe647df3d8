"""The supreme trading engine: importable as a library, never prints, never exits."""

__version__ = "0.1.0"
