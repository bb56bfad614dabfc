"""Sweep files: named studies (a protocol with its methods, scenarios, search and seeds).

    description: free text            # optional
    results: runs/my_sweep          # default results store (`--results` overrides)
    defaults:                        # shared by every study (any common protocol option)
      backbone: tiny_vit
      tune_seeds: [0]
      eval_seeds: [1, 2, 3]
    studies:
      cil:                           # the study's name, unique in the store
        protocol: tune_eval
        tune: {name: class_incremental, classes: first_half, increment: 2}
        eval: {name: class_incremental, classes: second_half, increment: 2}
        methods:
          finetune: {lr: [0.003, 0.01, 0.03]}
          simplecil: {}
      cil_oracle: {protocol: oracle, of: cil}

Everything is validated when the file is loaded (names, options, search values, stream kinds),
and the backbones, method requirements and the protocols' separation checks before any run
starts. `Sweep.plan(records)` is a pure function of the finished records; `ctta.sweep.launch`
runs what is missing, re-planning as runs finish, so evaluation runs start as soon as a
method's tuning is over. State lives in the store:

    <results>/studies/<study>.json               the study's protocol, resolved config and check
                                                 (a damaged one is set aside and written anew)
    <results>/runs/<run_id>/protocol/<study>.json  why a study needs the run (phases, check)
    <results>/feature_cache/                     frozen-backbone features shared by all runs
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import as_dict, load_yaml
from ..core.errors import UserError, choices_error
from ..core.files import atomic_write_bytes, content_key
from ..core.registry import METHODS, PROTOCOLS, create_scenario
from ..models.factory import create_backbone
from ..plan.protocol import PlannedRun, Protocol
from ..run.engine import check_fit
from ..run.store import Store, read_json

log = logging.getLogger(__name__)
CHECK_VERSION = 1
TOP_KEYS = ("defaults", "description", "results", "studies")


@dataclass
class Sweep:
    path: str
    studies: list[Protocol]
    results: str | None = None
    _backbones: dict[str, Any] = field(default_factory=dict, repr=False)
    _checks: dict[str, dict] = field(default_factory=dict, repr=False)
    _streams: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def only(self, names: list[str] | tuple[str, ...]) -> Sweep:
        """The sweep restricted to the studies `names` (all of them when empty): a long sweep
        file can run family by family into one store, each family complete before the next."""
        known = [s.study for s in self.studies]
        for name in names:
            if name not in known:
                raise choices_error(f"study in {self.path}:", name, known)
        if not names:
            return self
        return dataclasses.replace(self, studies=[s for s in self.studies if s.study in names])

    # -- planning ---------------------------------------------------------------------------
    def plan(self, records: Mapping[str, dict]) -> list[PlannedRun]:
        """Every run the studies need given the finished records (a run shared by two studies
        or phases appears once per use)."""
        return [run for study in self.studies for run in study.plan(records)]

    def waiting(self, planned: list[PlannedRun]) -> dict[str, int]:
        """Per study, the eval runs not planned yet because their method's tuning is unfinished."""
        out = {}
        for study in self.studies:
            if study.cases["eval"] == study.cases["tune"] and study.eval_seeds == study.tune_seeds:
                out[study.study] = 0  # its eval runs are tune runs (oracle)
                continue
            ready = {r.method for r in planned if r.study == study.study and r.phase == "eval"}
            per_method = len(study.cases["eval"]) * len(study.eval_seeds)
            out[study.study] = per_method * sum(m not in ready for m in study.spaces)
        return out

    # -- before any run ----------------------------------------------------------------------
    def prepare(self, store: Store | None = None) -> None:
        """Before any run: build each backbone once (so cached artefacts such as pretrained
        stand-ins are made here, not by every worker), check that every method fits every case
        as `ctta run` would (a stream per case: data checks, stream kind, backbone
        capabilities), and run every study's separation check. Only when all of them pass are
        the study definitions written into `store` (checks are reused from there)."""
        for study in self.studies:
            seed = (*study.tune_seeds, *study.eval_seeds)[0]
            for case in (*study.cases["tune"], *study.cases["eval"]):
                backbone, stream = self._backbone(case.backbone), self._stream(case, seed)
                for method in study.spaces:
                    try:
                        check_fit(METHODS.get(method), backbone, stream)
                    except UserError as exc:
                        raise UserError(f"{study.where}: scenario {case.label!r}: {exc}") from None
        writes = []
        for study in self.studies:
            self._checks[study.study], write = self._check(study, store)
            writes += [write] if write else []
        for path, data in writes:
            atomic_write_bytes(path, data)

    def check(self, study: str) -> dict | None:
        return self._checks.get(study)

    def _backbone(self, spec: dict):
        key = content_key(spec)
        if key not in self._backbones:
            self._backbones[key] = create_backbone(spec)
        return self._backbones[key]

    def _stream(self, case, seed: int):
        key = (content_key(case.scenario), seed, self._backbone(case.backbone).image_size)
        if key not in self._streams:
            scenario = create_scenario(**case.scenario)
            self._streams[key] = scenario.build(seed=seed, image_size=key[2], device=torch.device("cpu"))
        return self._streams[key]

    def _check(self, study: Protocol, store: Store | None) -> tuple[dict, tuple[Path, bytes] | None]:
        """The study's separation check, and the study file to write (None: it is there)."""
        definition = study_definition(study)
        path = store.root / "studies" / f"{study.study}.json" if store is not None else None
        old = read_json(path, study_file_problem, "the check runs again") if path is not None else None
        if old is not None and old.get("check_key") == definition["check_key"]:
            return old["check"], None
        streams = {phase: [] for phase in ("tune", "eval")}
        seeds = {"tune": study.tune_seeds, "eval": study.eval_seeds}
        for phase, cases in study.cases.items() if study.checks_data else ():
            for case in cases:
                streams[phase] += [self._stream(case, seed) for seed in seeds[phase]]
        check = study.check(streams["tune"], streams["eval"])
        data = json.dumps({**definition, "check": check}, indent=1).encode()
        return check, (path, data) if path is not None else None

    # -- annotations ---------------------------------------------------------------------------
    def annotate(self, store: Store, planned: list[PlannedRun]) -> None:
        """Write, next to each run, why each study needs it (phases; for eval runs the check)."""
        notes: dict[tuple[str, str], dict] = {}
        for run in planned:
            note = notes.setdefault(
                (run.run_id, run.study),
                {
                    "study": run.study,
                    "protocol": next(s.name for s in self.studies if s.study == run.study),
                    "phases": [],
                    "method": run.method,
                    "config_id": run.config_id,
                    "case": run.case,
                    "seed": run.spec.seed,
                },
            )
            if run.phase not in note["phases"]:
                note["phases"].append(run.phase)
            if run.phase == "eval":
                note["check"] = self.check(run.study)
        for (run_id, study), note in notes.items():
            path = store.run_dir(run_id) / "protocol" / f"{study}.json"
            data = json.dumps(note, indent=1, sort_keys=True).encode()
            if not path.exists() or path.read_bytes() != data:
                atomic_write_bytes(path, data)


def study_definition(study: Protocol) -> dict[str, Any]:
    """What `<results>/studies/<study>.json` holds besides the check: enough to rebuild it."""
    config = as_dict(study.config)
    return {
        "study": study.study,
        "protocol": study.name,
        "config": config,
        "check_key": content_key(
            {
                "protocol": study.name,
                "config": config,
                "version": CHECK_VERSION,
                "cases": {phase: [c.as_dict() for c in cases] for phase, cases in study.cases.items()},
            }
        ),
    }


def study_file_problem(data: Any) -> str | None:
    """What makes the contents of `<results>/studies/<study>.json` unusable, or None."""
    if not isinstance(data, dict):
        return f"expected a mapping, got {type(data).__name__}"
    missing = [k for k in ("study", "protocol", "config", "check") if k not in data]
    if missing:
        return f"missing key {missing[0]!r}"
    return None if isinstance(data["config"], dict) else "config: not a mapping"


def load_studies(store: Store) -> list[tuple[Protocol, dict | None]]:
    """The studies a store holds, with their checks (for collect and leaderboards)."""
    folder = store.root / "studies"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_json(path, study_file_problem, "its tables are left out until a launch writes it again")
        if data is None:
            continue
        try:
            protocol = PROTOCOLS.get(data["protocol"])(study=data["study"], where=str(path), **data["config"])
        except UserError as exc:  # e.g. a plugin method that is not installed here
            log.warning("skipping study %s: %s", data["study"], exc)
            continue
        out.append((protocol, data.get("check")))
    return out


# --------------------------------------------------------------------------- loading files
def load_sweep(path: str | Path) -> Sweep:
    """Parse and validate a sweep file; every problem is a UserError naming file and key."""
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(TOP_KEYS)}")
    defaults = raw.get("defaults") or {}
    common = [f.name for f in dataclasses.fields(Protocol.Config)]
    if not isinstance(defaults, Mapping):
        raise UserError(f"{path}: defaults: expected a mapping of protocol options")
    bad = sorted(set(defaults) - set(common))
    if bad:
        raise UserError(f"{path}: defaults: unknown option {bad[0]!r}; valid options: {', '.join(common)}")
    studies_raw = raw.get("studies")
    if not isinstance(studies_raw, Mapping) or not studies_raw:
        raise UserError(f"{path}: studies: expected a mapping of study name -> study")
    results = raw.get("results")
    if results is not None and not isinstance(results, str):
        raise UserError(f"{path}: results: expected a directory path, got {results!r}")

    studies: dict[str, Protocol] = {}
    # studies that refer to another one ('of') are built after those they refer to
    order = sorted(studies_raw, key=lambda n: isinstance(studies_raw[n], Mapping) and "of" in studies_raw[n])
    for name in order:
        body = studies_raw[name]
        where = f"{path}: studies.{name}"
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"{path}: studies: invalid study name {name!r} (letters, digits, - and _)")
        if not isinstance(body, Mapping) or "protocol" not in body:
            raise UserError(
                f"{where}: expected a mapping with a 'protocol' (one of {', '.join(PROTOCOLS.names())})"
            )
        body = dict(body)
        try:
            cls = PROTOCOLS.get(body.pop("protocol"))
        except UserError as exc:
            raise UserError(f"{where}: protocol: {exc}") from None
        if body.get("of") is not None:
            body = _inherit(body, studies, where, cls)
        else:
            body = {**defaults, **body}
        studies[name] = cls(study=name, where=where, **body)
    return Sweep(str(path), [studies[n] for n in studies_raw], results)


INHERITED = ("methods", "backbone", "eval_seeds", "metric", "search", "samples", "search_seed")


def _inherit(body: dict, studies: dict[str, Protocol], where: str, cls) -> dict:
    """`of: <study>`: take the scored scenarios, methods, search and seeds of that study."""
    if "of" not in {f.name for f in dataclasses.fields(cls.Config)}:
        raise UserError(f"{where}: unknown option 'of' for protocol {cls.name!r}")
    ref_name = body["of"]
    ref = studies.get(ref_name)
    if ref is None or getattr(ref.config, "of", None):
        choices = [n for n, s in studies.items() if not getattr(s.config, "of", None)]
        raise UserError(
            f"{where}: of: unknown study {ref_name!r}; valid choices: {', '.join(choices) or '(none)'}"
        )
    clash = sorted(set(body) & {*INHERITED, "scenarios", "tune_seeds"})
    if clash:
        raise UserError(
            f"{where}: {clash[0]!r} comes from study {ref_name!r} (of: {ref_name}); remove it here"
        )
    inherited = {k: getattr(ref.config, k) for k in INHERITED}
    return {**body, **inherited, "scenarios": [c.as_dict() for c in ref.cases["eval"]]}
