"""The seed papers' claims, tested on a results store: one row per claim, with the numbers and
95 % intervals that test it and a verdict.

Each claim is a list of comparisons between two (method, scored scenarios) sides of one
honest study, on one metric, computed on paired bootstrap replicates (`ctta.report.stats`):
`A > B` reads "A is better than B", so the difference d = A − B is sign-adjusted for metrics
where lower is better (forgetting, error), and comes with its interval [lo, hi].

Verdicts (the thresholds are the module's constants):
- `>` (A beats B): holds when lo > 0; does not hold when hi < 0; else inconclusive.
- `>=` (A is at least as good as B): holds when lo >= -MARGIN; does not hold when
  hi < -MARGIN; else inconclusive. MARGIN is one point of the metric.
- a claim holds when all its measured comparisons hold, does not hold when one does not, and
  is inconclusive otherwise; "not measured" when the store has no study with its setting or a
  comparison cannot be made (of a group, such as LAME's two label-correlated orders, one
  measured comparison is enough).
- The Reality Check claim holds when some pair of methods is ordered differently by the
  oracle and by separated tuning (point estimates) in at least FLIP_P of the replicates; it
  does not hold when no pair's order differs; else inconclusive.

A study matches a claim when its scored scenarios are of one of the claim's scenario kinds
(HFT's forgetting is tested on class- and domain-incremental streams: the paper's claim is
about forgetting, not about new classes) and it holds the claim's methods; a side's
scenarios are those whose options match the side's `where` (e.g. `order: iid`). Every honest
study that matches is tested.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..plan.metrics import LOWER_IS_BETTER
from .intervals import StudyIntervals
from .results import Results, eval_records, honest_studies, study_intervals
from .stats import interval

MARGIN = 1.0
FLIP_P = 0.9
IID = {"order": ("iid",)}
LABEL_CORRELATED = {"order": ("class_sorted", "dirichlet")}
CLASS_SORTED = {"order": ("class_sorted",)}
DIRICHLET = {"order": ("dirichlet",)}


@dataclass(frozen=True)
class Side:
    method: str
    where: dict = field(default_factory=dict)

    def label(self) -> str:
        opts = ", ".join(f"{k}={'|'.join(v)}" for k, v in self.where.items())
        return self.method + (f" [{opts}]" if opts else "")


@dataclass(frozen=True)
class Comparison:
    a: Side
    relation: str  # ">" or ">="
    b: Side
    metric: str
    group: str = ""  # comparisons of one non-empty group stand in for each other (see evaluate_claims)


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    statement: str
    scenarios: tuple[str, ...]  # the scenario kinds a study may score to test the claim
    comparisons: tuple[Comparison, ...]
    comment: str


def _cmp(a, relation, b, metric, where_a=None, where_b=None, group="") -> Comparison:
    return Comparison(Side(a, where_a or {}), relation, Side(b, where_b or {}), metric, group)


CLAIMS = (
    Claim(
        "mos_l2_ewc_finetune",
        "Sun et al., MOS (AAAI 2025); Smith et al. on L2/EWC with pretrained ViTs",
        "MOS > L2 and EWC > finetune in last accuracy",
        ("class_incremental",),
        tuple(
            _cmp(a, ">", b, "last_acc")
            for a, b in (("mos", "l2"), ("mos", "ewc"), ("l2", "finetune"), ("ewc", "finetune"))
        ),
        "Needs a pretrained backbone whose features transfer, and tasks long enough for "
        "fine-tuning to forget.",
    ),
    Claim(
        "hft_forgets_less",
        "Hui et al., HFT: Half Fine-Tuning (2024)",
        "HFT forgets less than full fine-tuning",
        ("class_incremental", "domain_incremental"),
        (_cmp("hft", ">", "finetune", "forgetting_max"),),
        "Forgetting is forgetting_max; lower is better, so `>` reads 'forgets less' and d is "
        "finetune's forgetting minus HFT's.",
    ),
    Claim(
        "cpe_clip_fscil",
        "D'Alessandro et al., CPE-CLIP (2023)",
        "CPE-CLIP beats zero-shot CLIP and unregularised prompts (CoOp) in few-shot CIL",
        ("few_shot_class_incremental",),
        (_cmp("cpe_clip", ">", "clip_zeroshot", "avg_inc_acc"), _cmp("cpe_clip", ">", "coop", "avg_inc_acc")),
        "Needs enough base-session data for the prompts to learn; scored by average "
        "incremental accuracy as in the paper.",
    ),
    Claim(
        "lame_iid_and_non_iid",
        "Boudiaf et al., LAME (CVPR 2022)",
        "LAME is at least as good as the source model on i.i.d. streams and beats Tent on "
        "label-correlated streams",
        ("corruption",),
        (
            _cmp("lame", ">=", "source", "online_acc", IID, IID),
            _cmp("lame", ">", "tent", "online_acc", CLASS_SORTED, CLASS_SORTED, group="non-iid"),
            _cmp("lame", ">", "tent", "online_acc", DIRICHLET, DIRICHLET, group="non-iid"),
        ),
        f"At least as good: the interval of LAME − source lies above −{MARGIN:g} point. The "
        "label-correlated orders are compared one by one, as the paper reports them. Needs a "
        "competent source model (LAME only corrects its outputs).",
    ),
    Claim(
        "bn_tent_iid_vs_non_iid",
        "Schneider et al. (NeurIPS 2020); Wang et al., Tent (ICLR 2021); Boudiaf et al., LAME",
        "BN adaptation and Tent beat the source model on i.i.d. corruptions and degrade on "
        "label-correlated streams",
        ("corruption",),
        (
            _cmp("bn_adapt", ">", "source", "online_acc", IID, IID),
            _cmp("tent", ">", "source", "online_acc", IID, IID),
            _cmp("bn_adapt", ">", "bn_adapt", "online_acc", IID, LABEL_CORRELATED),
            _cmp("tent", ">", "tent", "online_acc", IID, LABEL_CORRELATED),
        ),
        "Degrade: each method's online accuracy on label-correlated streams is below its own "
        "on i.i.d. streams of the same corruptions.",
    ),
    Claim(
        "itta_held_out_domain",
        "Chen et al., ITTA (CVPR 2023)",
        "ITTA is at least as good as ERM (the source model) on a held-out domain",
        ("domain_shift",),
        (_cmp("itta", ">=", "source", "online_acc"),),
        f"At least as good: the interval of ITTA − ERM lies above −{MARGIN:g} point.",
    ),
)

REALITY_CHECK = Claim(
    "reality_check",
    "Cha & Cho, Hyperparameters in Continual Learning: a Reality Check (2024)",
    "Tuning on the scored data reorders methods: some pair is ranked differently by separated tuning",
    "*",
    (),
    f"Holds when a pair's order differs between oracle and separated tuning in at least {FLIP_P:.0%} "
    "of the bootstrap replicates.",
)


def evaluate_claims(res: Results) -> pd.DataFrame:
    """One row per (claim, matching study): the evidence, its interval and the verdict."""
    rows = []
    studies = {study: eval_records(res, study) for study in honest_studies(res)}
    studies = {s: r for s, r in studies.items() if not r.empty}
    for claim in CLAIMS:
        matched = [s for s, runs in studies.items() if _matches(claim, runs)]
        if not matched:
            rows.append(_row(claim, "–", "not measured", [], "no study in this store scores this setting"))
        for study in matched:
            runs = studies[study]
            iv = study_intervals(res, study, runs)
            results = [_compare(iv, runs, c) for c in claim.comparisons]
            evidence = [r for r in results if r is not None]
            # every comparison is needed, except that one measured comparison of a group is enough
            needed = {c.group or i for i, c in enumerate(claim.comparisons)}
            have = {c.group or i for i, (c, r) in enumerate(zip(claim.comparisons, results)) if r is not None}
            if have != needed:
                rows.append(_row(claim, study, "not measured", evidence, "a side has no scored scenario"))
                continue
            verdicts = [e["verdict"] for e in evidence]
            verdict = (
                "holds"
                if all(v == "holds" for v in verdicts)
                else "does not hold"
                if "does not hold" in verdicts
                else "inconclusive"
            )
            rows.append(_row(claim, study, verdict, evidence, claim.comment))
    rows += _reality_check(res, studies)
    return pd.DataFrame(rows)


def _matches(claim: Claim, runs: pd.DataFrame) -> bool:
    names = set(runs["scenario"]) if "scenario" in runs else set()
    methods = {s.method for c in claim.comparisons for s in (c.a, c.b)}
    return len(names) == 1 and names <= set(claim.scenarios) and methods <= set(runs["method"])


def _cases(runs: pd.DataFrame, where: dict) -> list[str]:
    keep = np.ones(len(runs), dtype=bool)
    for option, allowed in where.items():
        column = f"sc.{option}"
        keep &= runs[column].isin(allowed).to_numpy() if column in runs else False
    return list(dict.fromkeys(runs.loc[keep, "case"]))


def _compare(iv: StudyIntervals, runs: pd.DataFrame, c: Comparison) -> dict | None:
    cases_a, cases_b = _cases(runs, c.a.where), _cases(runs, c.b.where)
    if not cases_a or not cases_b:
        return None
    sign = -1.0 if c.metric in LOWER_IS_BETTER else 1.0
    a_rep = iv.score(c.a.method, c.metric, cases=cases_a)
    b_rep = iv.score(c.b.method, c.metric, cases=cases_b)
    a, b = iv.point_score(c.a.method, c.metric, cases_a), iv.point_score(c.b.method, c.metric, cases_b)
    lo, hi = interval(sign * (a_rep - b_rep))
    floor = -MARGIN if c.relation == ">=" else 0.0
    if lo > floor or (c.relation == ">=" and lo == floor):
        verdict = "holds"
    elif hi < floor:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return {
        "comparison": f"{c.a.label()} {c.relation} {c.b.label()} ({c.metric})",
        "a": a,
        "b": b,
        "difference": sign * (a - b),
        "lo": lo,
        "hi": hi,
        "verdict": verdict,
    }


def _row(claim: Claim, study: str, verdict: str, evidence: list[dict], comment: str) -> dict:
    numbers = "; ".join(
        f"{e['comparison']}: {e['a']:.1f} vs {e['b']:.1f}, d = {e['difference']:+.1f} "
        f"[{e['lo']:+.1f}, {e['hi']:+.1f}] ({e['verdict']})"
        for e in evidence
    )
    return {
        "claim": claim.id,
        "paper": claim.paper,
        "statement": claim.statement,
        "study": study,
        "evidence": numbers or "–",
        "verdict": verdict,
        "comment": comment,
    }


def _reality_check(res: Results, studies: dict[str, pd.DataFrame]) -> list[dict]:
    rows = []
    for study, runs in studies.items():
        if res.gap.empty or study not in set(res.gap["study"]):
            continue
        gap = res.gap[res.gap.study == study].dropna(subset=["honest", "oracle"])
        if len(gap) < 2:  # the oracle study is still running: no pair to compare yet
            continue
        metric = gap["metric"].iloc[0]
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        iv = study_intervals(res, study, runs)
        honest = dict(zip(gap["method"], sign * gap["honest"]))
        oracle = dict(zip(gap["method"], sign * gap["oracle"]))
        swapped = [
            (iv.order_flip(metric, a, b), a, b)
            for a, b in itertools.combinations(sorted(honest), 2)
            if np.sign(honest[a] - honest[b]) * np.sign(oracle[a] - oracle[b]) < 0
        ]
        if not swapped:
            verdict, evidence = "does not hold", "no pair of methods is ordered differently"
        else:
            p, a, b = max(swapped)
            verdict = "holds" if p >= FLIP_P else "inconclusive"
            evidence = (
                f"{len(swapped)} pair(s) swap; strongest: {a} vs {b} ({metric}: separated "
                f"{sign * honest[a]:.1f} vs {sign * honest[b]:.1f}, oracle {sign * oracle[a]:.1f} vs "
                f"{sign * oracle[b]:.1f}), order differs in {p:.0%} of replicates"
            )
        rows.append(
            {
                "claim": REALITY_CHECK.id,
                "paper": REALITY_CHECK.paper,
                "statement": REALITY_CHECK.statement,
                "study": study,
                "evidence": evidence,
                "verdict": verdict,
                "comment": REALITY_CHECK.comment,
            }
        )
    if not rows:
        rows.append(
            {
                "claim": REALITY_CHECK.id,
                "paper": REALITY_CHECK.paper,
                "statement": REALITY_CHECK.statement,
                "study": "–",
                "evidence": "–",
                "verdict": "not measured",
                "comment": "no oracle study measures a protocol gap in this store",
            }
        )
    return rows


def markdown(claims: pd.DataFrame) -> str:
    """The claims table for people (the leaderboard's Claims section, `ctta claims`)."""
    shown = claims[["claim", "statement", "study", "evidence", "verdict", "comment"]]
    return shown.to_markdown(index=False)


def write_claims(results, out) -> list:
    """Write claims.md, claims.csv and claims.json into `out`; returns the paths."""
    import json
    from pathlib import Path

    from .results import load_results

    claims = evaluate_claims(load_results(results))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"claims.{ext}" for ext in ("md", "csv", "json")]
    paths[0].write_text(markdown(claims) + "\n")
    claims.to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps(claims.to_dict("records"), indent=1))
    return paths
