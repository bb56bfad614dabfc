"""Options that more than one command takes."""

from __future__ import annotations

import click

TRACKER_HELP = "Also log each run to an experiment tracker: tensorboard or mlflow (the JSON record stays)."
TRACKER_DIR_HELP = (
    "Tracker folder (MLflow: a folder, i.e. the file store, or a tracking URI); "
    "default RESULTS/tensorboard or RESULTS/mlruns."
)


def tracker_options(command):
    """`--tracker KIND` and `--tracker-dir DIR` (see `ctta.run.trackers`)."""
    command = click.option("--tracker-dir", metavar="DIR", help=TRACKER_DIR_HELP)(command)
    return click.option("--tracker", metavar="tensorboard|mlflow", help=TRACKER_HELP)(command)
