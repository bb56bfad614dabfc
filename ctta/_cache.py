"""Where ctta keeps generated data (datasets, rendered glyphs, ...) between runs.

One resolver shared by every module so that a single environment variable moves all caches, e.g. onto a
scratch disk on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the root cache directory (not created here; callers ``mkdir`` the sub-folder they use).

    Resolution order: ``$CTTA_CACHE`` if set and non-empty, else ``$XDG_CACHE_HOME/ctta``, else
    ``~/.cache/ctta`` (the XDG default).
    """
    env = os.environ.get("CTTA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ctta"
