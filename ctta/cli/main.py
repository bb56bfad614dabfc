"""The `ctta` command line. User errors print one line and exit with status 2, no traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..core import progress
from ..core.config import load_yaml, parse_assignments
from ..core.errors import UserError
from .options import tracker_options
from .sweep import sweep_cmd

KINDS = ("methods", "scenarios", "protocols", "backbones", "datasets")


def _registry(kind: str):
    from ..core import registry

    return {
        "methods": registry.METHODS,
        "scenarios": registry.SCENARIOS,
        "protocols": registry.PROTOCOLS,
        "backbones": registry.BACKBONES,
        "datasets": registry.DATASETS,
    }[kind]


def _summary(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they also hide when not a terminal).")
@click.version_option(package_name="ctta")
def cli(verbose: bool, quiet: bool) -> None:
    """ctta: continual-learning and test-time-adaptation benchmarks with separated tune/eval protocols."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    progress.show(not quiet)


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
def list_cmd(kind: str | None) -> None:
    """List registered methods, scenarios, protocols, backbones and datasets."""
    for k in [kind] if kind else KINDS:
        reg = _registry(k)
        click.echo(f"{k}:")
        for name in reg.names():
            entry = reg.families()[name[:-2]] if name.endswith(":*") else reg.get(name)
            click.echo(f"  {name:<22} {_summary(entry)}")
        if reg.fallback_form is not None:
            click.echo(f"  {reg.fallback_form[0]:<22} {reg.fallback_form[1]}")
        for name, why in reg.broken().items():
            click.echo(f"  {name:<22} (failed to load: {why})")


@cli.command("show")
@click.argument("kind", type=click.Choice(["method", "scenario"]))
@click.argument("name")
def show_cmd(kind: str, name: str) -> None:
    """Show a method's hyperparameters or a scenario's options: defaults, valid ranges, search
    spaces, docs."""
    import dataclasses

    from ..core.config import field_range

    reg = _registry(kind + "s")
    cls = reg.get(name)
    config = cls.HParams if kind == "method" else cls.Config
    click.echo(f"{name}: {_summary(cls)}")
    for f in dataclasses.fields(config):
        space = f.metadata.get("space", (f.default,))
        extra = f"  search: {list(space)}" if len(space) > 1 else ""
        extra += f"  range: {field_range(f)}" if field_range(f) else ""
        click.echo(f"  {f.name} = {f.default!r}{extra}\n      {f.metadata.get('doc', '')}")


@cli.command("run")
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False))
@click.option("--scenario", help="Scenario name (overrides the spec file).")
@click.option("-S", "scenario_opts", multiple=True, metavar="KEY=VALUE", help="Scenario option.")
@click.option("--method", help="Method name.")
@click.option("-H", "hparams", multiple=True, metavar="KEY=VALUE", help="Method hyperparameter.")
@click.option("--backbone", help="Backbone name (e.g. tiny_vit, small_cnn, timm:resnet18).")
@click.option("-B", "backbone_opts", multiple=True, metavar="KEY=VALUE", help="Backbone option.")
@click.option("--seed", type=int, help="Run seed (default 1993).")
@click.option("--results", default="runs", show_default=True, help="Results store directory.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--retry-failed", is_flag=True, help="Run again if the record says it failed.")
@click.option("--reclaim", is_flag=True, help="Take the run over even if another process holds it.")
@tracker_options
def run_cmd(
    spec_file,
    scenario,
    scenario_opts,
    method,
    hparams,
    backbone,
    backbone_opts,
    seed,
    results,
    device,
    retry_failed,
    reclaim,
    tracker,
    tracker_dir,
) -> None:
    """Run one (scenario, method, backbone, seed) and write its record."""
    from ..plan.spec import RunSpec
    from ..run.engine import execute
    from ..run.store import Store
    from ..run.trackers import make_tracker

    raw: dict[str, Any] = load_yaml(spec_file) if spec_file else {}
    if not isinstance(raw, dict):
        raise UserError(f"{spec_file}: expected a mapping with scenario, method, backbone, seed")
    for key, name, opts in (
        ("scenario", scenario, scenario_opts),
        ("method", method, hparams),
        ("backbone", backbone, backbone_opts),
    ):
        current = raw.get(key, {})
        current = {"name": current} if isinstance(current, str) else dict(current or {})
        if name:
            current = {"name": name}
        current.update(parse_assignments(opts, key))
        if current:
            raw[key] = current
    if seed is not None:
        raw["seed"] = seed
    tracking = make_tracker(tracker, tracker_dir, results)
    spec = RunSpec.parse(raw, where=spec_file or "command line")
    store = Store(results)
    existed = store.record(spec.run_id)
    record = execute(
        spec,
        store=store,
        device=device,
        retry_failed=retry_failed,
        reclaim=reclaim,
        progress=True,
        tracker=tracking,
    )
    if existed is record or (existed is not None and existed == record):
        click.echo(f"already recorded ({record['status']}), not run again")
        if tracking is not None and tracking.export([record]):
            click.echo(f"logged to {tracking.kind} ({tracking.target})")
    click.echo(f"{spec.label}: {record['status']}" + (f" ({record['error']})" if record.get("error") else ""))
    for k, v in record.get("metrics", {}).items():
        if not k.startswith("acc@"):
            click.echo(f"  {k:<18} {v:8.2f}")
    click.echo(f"  {'wall_s':<18} {record['wall_s']:8.2f}")
    click.echo(f"record: {store.run_dir(spec.run_id) / 'record.json'}")
    if record["status"] != "done":
        sys.exit(1)


@cli.command("collect")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--out", help="Table path without suffix (default RESULTS/records).")
def collect_cmd(results: str, out: str | None) -> None:
    """Read every record under RESULTS into one table (CSV, and Parquet when pyarrow is installed),
    and write the protocol tables of its studies next to it (protocol_summary, protocol_gap, ...)."""
    from ..run.store import collect, write_table

    if not Path(results).is_dir():
        raise UserError(f"{results}: no such results directory")
    df = collect(results)
    if df.empty:
        raise UserError(f"{results}: no run records found")
    out = Path(out) if out else Path(results) / "records"
    for path in write_table(df, out):
        click.echo(f"wrote {path}")
    counts = df["status"].value_counts().to_dict()
    click.echo(f"{len(df)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    from ..report.tables import protocol_tables

    for name, table in protocol_tables(results).items():  # studies of launched sweeps, if any
        if not table.empty:
            for path in write_table(table, out.with_name(name)):
                click.echo(f"wrote {path}")


@cli.command("pretrain")
@click.argument("what", type=click.Choice(["vit", "clip"]))
@click.option("--out", help="Folder for the weights and their manifest (default: <cache>/backbones).")
def pretrain_cmd(what: str, out: str | None) -> None:
    """Build the weights of an offline backbone again (tiny ViT or tiny CLIP, pretrained on glyph
    material no benchmark uses; ctta ships them), and compare their scores with the shipped ones."""
    from ..core.files import cache_dir
    from ..zoo.backbones import pretrain

    path, report, comparison = pretrain(what, out or cache_dir() / "backbones")
    click.echo(f"trained in {report['wall_s']:.0f} s; held-out scores (shipped weights in brackets):")
    for line in comparison:
        click.echo(f"  {line}")
    click.echo(f"weights: {path} (manifest: {path.with_suffix('.json')})")
    click.echo(f"use them with -B weights={path}")


@cli.command("leaderboard")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--out", help="Output folder (default RESULTS/leaderboard).")
def leaderboard_cmd(results: str, out: str | None) -> None:
    """Leaderboards of RESULTS per study and scored scenario: Markdown, sortable HTML, CSV, JSON."""
    from ..report.leaderboard import write_leaderboards

    for path in write_leaderboards(results, out or Path(results) / "leaderboard"):
        click.echo(f"wrote {path}")


@cli.command("claims")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--out", help="Also write claims.md, claims.csv and claims.json into this folder.")
def claims_cmd(results: str, out: str | None) -> None:
    """Test the seed papers' claims on RESULTS: each claim's numbers, 95 % intervals and verdict."""
    from ..report.claims import evaluate_claims, markdown, write_claims
    from ..report.results import load_results

    click.echo(markdown(evaluate_claims(load_results(results))))
    for path in write_claims(results, out) if out else ():
        click.echo(f"wrote {path}")


@cli.command("plot")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--out", help="Output folder (default RESULTS/figures).")
def plot_cmd(results: str, out: str | None) -> None:
    """The figures of RESULTS (PNG and PDF): accuracy curves and matrices, protocol gap, rank
    shift, sensitivity, test-time errors and online accuracy, cost vs score."""
    from ..report.plots import write_figures

    for path in write_figures(results, out or Path(results) / "figures"):
        click.echo(f"wrote {path}")


cli.add_command(sweep_cmd)


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, standalone_mode=False, prog_name="ctta")
    except UserError as exc:
        click.echo(f"ctta: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("ctta: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("ctta: interrupted; finished runs are kept", err=True)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
