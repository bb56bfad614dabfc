"""The `ctta` command line: `list`, `show`, `run`, `sweep plan|status|launch`, `collect`,
`leaderboard`, `plot`, `pretrain`. A user error prints one line and exits with status 2."""

from .main import cli, main

__all__ = ["cli", "main"]
