"""Running: the engine that drives one method over one stream and scores it (`execute`), the
results store that keeps one atomic record per run (`Store`, `collect`), the claims that let
one process at a time run a run, and resume checkpoints that hold no code. Methods and
scenarios reach it only by name, through the registries."""

from .engine import execute
from .store import Store, collect

__all__ = ["Store", "collect", "execute"]
