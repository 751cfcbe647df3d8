"""The supreme trading engine: importable as a library, never prints, never exits."""

__version__ = "0.1.0"

from engine.numba_cache import ensure_writable_cache

# Before any module of the package imports numba (its kernels cache=True): a read-only
# install gets a writable cache folder instead of failing at the first compile.
ensure_writable_cache()
