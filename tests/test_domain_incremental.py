"""domain_incremental: streams from recorded domains and from transforms, the full domain x
domain matrix (before the first task too), forward transfer, and the methods on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ctta import Method, UserError, create_method, create_scenario
from ctta.cli import main
from ctta.data.images import ImageData
from ctta.data.transforms import apply_transform, transformed_domains
from ctta.methods.joint import Joint
from ctta.plan.metrics import domain_metrics, metric_direction
from ctta.run.engine import execute
from ctta.run.store import Store
from helpers import spec, temporary_method

CPU = torch.device("cpu")
GLYPHS = {"name": "glyphs", "chars": "abcdefgh", "domains": ["sans", "serif", "mono"], "per_class": 4}


def _build(seed=0, size=8, **config):
    return create_scenario("domain_incremental", **config).build(seed=seed, image_size=size, device=CPU)


def test_glyph_domains_make_one_task_each_with_every_class():
    stream = _build(dataset=GLYPHS, test_per_class=2)
    info = stream.info
    assert info.kind == "domain_incremental" and info.num_tasks == 3 and info.num_classes == 8
    assert info.extra["domain_order"] == ["sans", "serif", "mono"]
    names = GLYPHS["domains"]
    for i, task in enumerate(stream.tasks):
        assert task.domain == names[i] and task.classes == task.seen_classes == tuple(range(8))
        assert set(task.train.domains) == {i} and len(task.train) == 8 * 4
        assert set(stream.tests[i].domains) == {i} and len(stream.tests[i]) == 8 * 2  # capped
    # a drawn order is a permutation fixed by its seed; an explicit list is kept as given
    drawn = _build(dataset=GLYPHS, order="seed", order_seed=3).info.extra["domain_order"]
    assert (
        sorted(drawn) == sorted(names)
        and drawn == _build(dataset=GLYPHS, order="seed", order_seed=3, seed=9).info.extra["domain_order"]
    )
    assert _build(dataset=GLYPHS, domains=["mono", "sans"]).info.extra["domain_order"] == ["mono", "sans"]


def test_presets_resolve_and_explicit_options_win():
    s = create_scenario("domain_incremental", preset="glyph_domains")
    assert s.resolved() == ({"name": "glyphs"}, ("sans", "serif", "mono", "stix", "night", "pattern"), ())
    s = create_scenario("domain_incremental", preset="glyph_domains", domains=["night", "sans"])
    assert s.resolved()[1:] == (("night", "sans"), ())
    rotated = create_scenario("domain_incremental", preset="rotated_digits")
    assert rotated.resolved()[2] == tuple(f"rotate:{a}" for a in (0, 30, 60, 90, 120, 150))
    assert create_scenario("domain_incremental", preset="core50").resolved()[1][:3] == ("s1", "s2", "s4")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"preset": "glyph"}, "unknown domain-incremental preset 'glyph'; valid choices: .*glyph_domains"),
        ({}, "give a dataset .* or a preset; valid presets: glyph_domains, rotated_digits"),
        ({"dataset": "digits", "domains": ["a"], "transforms": ["none"]}, "domains or transforms, not both"),
        (
            {"dataset": "digits", "transforms": ["twist:3"]},
            "invalid domain transform 'twist:3'; valid forms: none, rotate",
        ),
        ({"dataset": "digits", "transforms": ["fog:9"]}, "invalid domain transform 'fog:9'"),
        ({"dataset": "digits", "transforms": ["none", "none"]}, "domains repeat"),
    ],
)
def test_bad_options_are_one_line_errors(config, message):
    with pytest.raises(UserError, match=message):
        create_scenario("domain_incremental", **config)


def test_data_without_domains_or_with_unknown_ones_is_refused_with_the_choices():
    with pytest.raises(UserError, match="dataset 'digits' records no domains; give transforms="):
        _build(dataset="digits")
    with pytest.raises(UserError, match="unknown domain of glyphs 'stix'; valid choices: mono, sans, serif"):
        _build(dataset=GLYPHS, domains=["stix"])


def test_transforms_make_domains_of_the_same_samples():
    stream = _build(
        dataset="digits", transforms=["none", "rotate:90", "permute:4", "contrast:5"], train_per_class=3
    )
    assert stream.info.extra["domain_order"] == ["none", "rotate:90", "permute:4", "contrast:5"]
    x = [t.train.load(np.arange(len(t.train)))[0] for t in stream.tasks]
    y = [t.train.targets for t in stream.tasks]
    assert all(len(v) == 30 and (v == y[0]).all() for v in y)  # 3 per class, the same samples
    assert torch.allclose(x[1], torch.rot90(x[0], 1, dims=(2, 3)), atol=1 / 255)
    assert torch.equal(x[2].flatten(2).sort(-1).values, x[0].flatten(2).sort(-1).values)  # pixels moved only
    assert not torch.equal(x[2], x[0]) and not torch.allclose(x[3], x[0], atol=0.1)
    # identities: cheap (no image hashing), distinct per transform, stable across builds
    ids = [t.train.identity() for t in stream.tasks]
    again = _build(
        dataset="digits", transforms=["none", "rotate:90", "permute:4", "contrast:5"], train_per_class=3
    )
    assert len(set(ids)) == 4 and ids == [t.train.identity() for t in again.tasks]


def test_transformed_data_pickles_as_its_recipe():
    import pickle

    base = ImageData.from_arrays(
        np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8), np.arange(6) % 2
    )
    data = transformed_domains(base, ["none", "permute:1"], seed=0)
    view = data.with_domains(["permute:1"])
    back = pickle.loads(pickle.dumps(view))
    assert torch.equal(back.load(np.arange(6))[0], view.load(np.arange(6))[0])
    assert torch.equal(
        apply_transform(base.load(np.arange(6))[0], "none", seed=0), data.load(np.arange(6))[0]
    )


class _Oracle(Method):
    """Right on the domains it has trained on, wrong elsewhere, nothing before the first task.
    Images carry their class in pixel (0, 0, 0) and their domain in pixel (1, 0, 0)."""

    name = "oracle_stub"
    stream_kinds = frozenset({"domain_incremental"})

    def setup(self, backbone, info):
        self.learned: set[int] = set()

    def learn(self, task):
        x, _ = task.train.load(np.arange(len(task.train)))
        self.learned |= set((x[:, 1, 0, 0] * 10).round().long().tolist())
        return {}

    def predict(self, x):
        c, d = (x[:, 0, 0, 0] * 10).round().long(), (x[:, 1, 0, 0] * 10).round().long()
        known = torch.tensor([int(v) in self.learned for v in d])
        logits = torch.full((len(x), 4), float("-inf"))
        if self.learned:
            logits = torch.zeros(len(x), 4)
            logits[torch.arange(len(x)), torch.where(known, c, (c + 1) % 4)] = 1.0
        return logits


def _coded_domains(path):
    """An .npz of 4 classes x 3 domains whose pixels encode class and domain."""
    c, d = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
    c, d = np.repeat(c.ravel(), 3), np.repeat(d.ravel(), 3)
    x = np.zeros((len(c), 3, 4, 4), np.float32)
    x[:, 0], x[:, 1] = c[:, None, None] / 10, d[:, None, None] / 10
    np.savez(path, x_train=x, y_train=c, domains_train=d, x_test=x, y_test=c, domains_test=d)
    return {"name": "arrays", "path": str(path)}


def test_engine_scores_every_domain_before_and_after_every_task(tmp_path):
    with temporary_method("oracle_stub", _Oracle):
        rec = execute(
            spec(
                {"name": "domain_incremental", "dataset": _coded_domains(tmp_path / "d.npz")}, "oracle_stub"
            ),
            device="cpu",
        )
    assert rec["status"] == "done", rec.get("error")
    # future domains are scored (0 here), the diagonal and below are learned (100)
    assert rec["acc_matrix"] == [[100.0, 0.0, 0.0], [100.0, 100.0, 0.0], [100.0, 100.0, 100.0]]
    assert rec["acc_initial"] == [25.0, 25.0, 25.0]  # nothing to predict with: a uniform guess
    assert rec["acc_seen"] == [100.0, 100.0, 100.0] and rec["domain_order"] == ["0", "1", "2"]
    m = rec["metrics"]
    assert m["fwt"] == pytest.approx(-25.0) and m["bwt"] == m["forgetting_max"] == 0.0
    assert m["last_acc"] == m["avg_inc_acc"] == 100.0


def test_domain_metrics_follow_gem_definitions():
    a = [[60.0, 30.0, 20.0], [50.0, 70.0, 40.0], [40.0, 65.0, 80.0]]
    seen = [60.0, 60.0, (40 + 65 + 80) / 3]
    m = domain_metrics(a, seen, [10.0, 20.0, 30.0])
    assert m["fwt"] == pytest.approx(((30 - 20) + (40 - 30)) / 2)
    assert m["bwt"] == pytest.approx(((40 - 60) + (65 - 70)) / 2)
    assert m["forgetting_max"] == pytest.approx(((60 - 40) + (70 - 65)) / 2)  # from the training task on
    assert m["last_acc"] == pytest.approx(seen[-1]) and m["avg_inc_acc"] == pytest.approx(np.mean(seen))
    assert metric_direction("fwt", "domain_incremental", "here") == ("fwt", True)
    with pytest.raises(UserError, match="unknown class_incremental metric 'fwt'"):
        metric_direction("fwt", "class_incremental", "here")


def test_a_method_without_domain_streams_is_refused_in_one_line():
    with pytest.raises(UserError, match="method 'tent' does not run on domain_incremental streams"):
        execute(spec({"name": "domain_incremental", "dataset": GLYPHS}, "tent"), device="cpu")


def test_mos_keeps_one_gaussian_and_prototype_per_domain_and_class():
    stream = _build(size=16, dataset=GLYPHS, test_per_class=2)
    from ctta.models.factory import create_backbone

    mos = create_method("mos", epochs=1, ca_epochs=1, ca_samples=8, max_iter=2)
    mos.attach(create_backbone("debug_vit"), stream.info)
    x = stream.tests[0].load(np.arange(4))[0]
    assert mos.predict(x).shape == (4, 8)  # before the first task: the starting model
    for task in stream.tasks[:2]:
        mos.learn(task)
    assert int(mos.stats.known.sum()) == int(mos.prototypes.known.sum()) == 2 * 8
    assert mos.slot_task.tolist() == [0] * 8 + [1] * 8 + [-1] * 8
    out = mos.predict(x)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    assert all(blk.route == 0 for blk in mos.blocks)  # no per-sample route left behind


def test_cpe_clip_balances_by_domains():
    stream = _build(dataset=GLYPHS)
    cpe = create_method("cpe_clip")
    cpe.info = stream.info
    assert [cpe.gradient_scale(t) for t in stream.tasks] == [1.0, 0.5, pytest.approx(1 / 3)]


def test_cli_runs_the_glyph_preset_and_a_folder_of_domains(tmp_path, capsys):
    from PIL import Image

    for d, dom in enumerate(["photo", "sketch"]):
        for c in range(2):
            (tmp_path / "tree" / dom / f"class{c}").mkdir(parents=True)
            for i in range(5):
                colour = (120 * c + 10 * i, 100 * d, 0)
                Image.new("RGB", (10, 10), colour).save(tmp_path / "tree" / dom / f"class{c}" / f"{i}.png")
    tree = f"{{name: imagefolder, root: {tmp_path / 'tree'}, domains: [photo, sketch], test_fraction: 0.4}}"
    glyphs = "{name: glyphs, chars: ab, per_class: 2, test_per_class: 1}"
    for options in (["-S", "preset=glyph_domains", "-S", f"dataset={glyphs}"], ["-S", f"dataset={tree}"]):
        main(["run", "--scenario", "domain_incremental", *options, "--method", "simplecil", "--backbone",
              "debug_vit", "--results", str(tmp_path / "results")])  # fmt: skip
        out = capsys.readouterr().out
        assert ": done" in out and "fwt" in out
    records = [r for r in Store(tmp_path / "results").records()]
    assert sorted(r["domain_order"] for r in records) == [
        ["photo", "sketch"],
        ["sans", "serif", "mono", "stix", "night", "pattern"],
    ]
    assert all(len(r["acc_matrix"]) == len(r["acc_matrix"][0]) == len(r["acc_initial"]) for r in records)


def _dil_runs() -> pd.DataFrame:
    """Two seeds of two methods on a 3-domain stream, as eval_records gives them."""
    rows = []
    for seed in (1, 2):
        for method, base in (("finetune", 10.0), ("simplecil", 40.0)):
            matrix = [[base + 10 * i + j + seed for j in range(3)] for i in range(3)]
            initial = [5.0, 6.0, 7.0]
            seen = [float(np.mean(matrix[i][: i + 1])) for i in range(3)]
            m = domain_metrics(matrix, seen, initial)
            rows.append(
                {"method": method, "seed": seed, "kind": "domain_incremental", "acc_matrix": matrix,
                 "acc_initial": initial, "acc_seen": seen, "domain_order": ["sans", "serif", "mono"],
                 "wall_s": 1.0, "trainable_params": 0, "peak_mb": 0.0, **m}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_leaderboard_and_figures_show_forward_transfer_and_the_full_matrix():
    from ctta.report.intervals import StudyIntervals
    from ctta.report.leaderboard import case_table, metric_columns
    from ctta.report.plots import accuracy_curve, accuracy_matrices, method_colors

    runs = _dil_runs().assign(case="glyphs")
    assert metric_columns(runs) == ["avg_inc_acc", "last_acc", "forgetting_max", "bwt", "fwt"]
    summary = pd.DataFrame({"method": ["finetune", "simplecil"], "chosen_config": "{}", "metric": "last_acc"})
    table = case_table(runs, summary, StudyIntervals(runs)).set_index("method")
    fwt = runs[runs.method == "finetune"]["fwt"]
    assert table.loc["finetune", "fwt"] == pytest.approx(fwt.mean())  # an ordinary record metric:
    assert (
        fwt.min() <= table.loc["finetune", "fwt_lo"] < table.loc["finetune", "fwt_hi"] <= fwt.max()
    )  # its interval
    fig = accuracy_matrices(runs)
    ax = next(a for a in fig.axes if a.get_title() == "simplecil")
    shown = ax.get_images()[0].get_array().filled(np.nan)
    expected = np.array([[5.0, 6.0, 7.0]] + [[40 + 10 * i + j + 1.5 for j in range(3)] for i in range(3)])
    assert np.allclose(shown, expected)  # the start row, then every domain after every task
    left = next(a for a in fig.axes if a.get_title() == "finetune")  # names on the outer panels only
    assert [t.get_text() for t in left.get_yticklabels()] == ["start", "sans", "serif", "mono"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sans", "serif", "mono"]
    curve = accuracy_curve(runs, method_colors(runs["method"])).axes[0]
    assert curve.get_ylabel() == "accuracy on seen domains (%)"


class Interrupted(Joint):
    """Joint, killed in task 1 while `stop` is set."""

    stop = True

    def learn(self, task):
        if task.index == 1 and Interrupted.stop:
            raise KeyboardInterrupt  # a kill: no record, the checkpoint of task 0 stays
        return super().learn(task)


def test_an_interrupted_run_resumes_with_its_starting_scores(store):
    run = spec(
        {
            "name": "domain_incremental",
            "dataset": "digits",
            "transforms": ["none", "rotate:90"],
            "train_per_class": 3,
        },
        "interrupted_joint",
        epochs=1,
    )
    with temporary_method("interrupted_joint", Interrupted):
        with pytest.raises(KeyboardInterrupt):
            execute(run, store=store, device="cpu")
        (run_dir,) = (store.root / "runs").iterdir()
        assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "record.json").exists()
        Interrupted.stop = False
        resumed = execute(run, store=store, device="cpu")
        straight = execute(run, device="cpu")
    assert resumed["status"] == "done"
    for key in ("acc_initial", "acc_matrix", "metrics"):
        assert resumed[key] == straight[key]
