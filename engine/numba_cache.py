"""Where numba keeps compiled kernels when the installed package cannot be written to.

numba's `cache=True` writes next to the source; in a container with a read-only root
filesystem, or a system install run by another user, the first compile then fails with
"no locator available". Call `ensure_writable_cache()` before importing numba: it leaves
an explicit NUMBA_CACHE_DIR alone and otherwise points numba at the user's cache folder
when the package folder is not writable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def ensure_writable_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(_PACKAGE_DIR, os.W_OK):
        return
    try:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("supreme", appauthor=False)) / "numba"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"supreme-numba-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
