"""Progress bars where a person waits: tqdm, with an ETA, on standard error.

Library code asks for a bar (`bar(...)`); whether bars show is the command line's decision:
`ctta` turns them on (`show(True)`) unless it runs with `--quiet`, and tqdm hides them when
standard error is not a terminal. Imported as a library, ctta shows none.
"""

from __future__ import annotations

from typing import Any

_shown = False


def show(enabled: bool) -> None:
    """Show progress bars in this process (the CLI calls it; worker processes never do)."""
    global _shown
    _shown = enabled


class _NoBar:
    total = 0

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    enabled: bool = True,
) -> Any:
    """A tqdm bar over `total` steps (a do-nothing bar when bars are not shown, or not `enabled`)."""
    if not (_shown and enabled):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True, disable=None
    )
