"""`python -m ctta.cli`: the same as the `ctta` command."""

from .main import main

main()
