"""Test-time methods: each method's defining rule, resets, and the shared pieces they use."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctta import StreamInfo, create_method
from ctta.data.datasets import digits
from ctta.kit.augment import STANDARD, augmented_mean, color_jitter, random_affine, tta_augment
from ctta.kit.params import use_batch_statistics
from ctta.kit.stages import lower_norm_parameters, probe_stages, stage_modules
from ctta.models.factory import create_backbone

LAME = pytest.importorskip("ctta.methods.lame")
ITTA = pytest.importorskip("ctta.methods.itta")
SHOT = pytest.importorskip("ctta.methods.shot_im")
BN_ADAPT = pytest.importorskip("ctta.methods.bn_adapt")


@pytest.fixture(scope="module")
def source():
    data = digits(split="train", image_size=16)
    return data.subset(np.arange(0, len(data), 40))  # 32 labelled images


def info_for(source, image_size=16):
    recipe = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "optimizer": "adamw", "weight_decay": 0.0, "seed": 0}
    return StreamInfo(
        kind="test_time",
        num_classes=10,
        class_names=tuple(map(str, range(10))),
        image_size=image_size,
        seed=0,
        device=torch.device("cpu"),
        source=source,
        extra={"source_recipe": recipe},
    )


def ready(name, source, backbone="debug_vit", **hparams):
    """A method set up on a randomly initialised backbone with a head, as the engine does it."""
    torch.manual_seed(0)
    b = create_backbone(backbone)
    b.reset_head(10)
    b.head_is_trained = True
    method = create_method(name, **hparams)
    method.attach(b, info_for(source, b.image_size))
    method.save_initial_state()
    return method


def batch(n=12, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def states_equal(a: dict, b: dict) -> bool:
    def same(u, v):  # NaN marks "no value yet" in some buffers
        return torch.equal(u, v) or (
            u.is_floating_point() and torch.allclose(u, v, rtol=0, atol=0, equal_nan=True)
        )

    return all(same(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- resets, for every adaptive method
MUST_ADAPT = {  # hyperparameters under which a random model's batch certainly triggers an update
    "tent": {},
    "shot_im": {},
    "pseudo_label": {"threshold": 0.0},
    "eata": {"e_margin": 1.0, "d_margin": 1.0, "fisher_size": 16},
    "sar": {"e_margin": 1.0, "reset_constant": 0.0},
    "cotta": {"n_augment": 2},
    "itta": {},
}


@pytest.mark.parametrize("name", sorted(MUST_ADAPT))
def test_adaptive_methods_adapt_and_reset(name, source):
    method = ready(name, source, **MUST_ADAPT[name])
    initial = copy.deepcopy(method.state_dict())
    x = batch()
    method.predict(x)
    assert not states_equal(method.state_dict(), initial), f"{name} did not adapt"
    periodic = ready(name, source, reset_every=1, **MUST_ADAPT[name])
    periodic.predict(x)
    assert states_equal(periodic.state_dict(), periodic._initial["model"])
    episodic = ready(name, source, episodic=True, **MUST_ADAPT[name])
    torch.manual_seed(1)
    first = episodic.predict(x)
    torch.manual_seed(1)
    assert torch.allclose(first, episodic.predict(x), atol=1e-5)  # every batch starts from the source model


# --------------------------------------------------------------------------- LAME
def dense_knn(x, k):
    """The reference code's kNN affinity: an N×N×D difference tensor."""
    dist = torch.norm(x.unsqueeze(0) - x.unsqueeze(1), dim=-1)
    idx = dist.topk(k + 1, -1, largest=False).indices[:, 1:]
    return torch.zeros(len(x), len(x)).scatter_(1, idx, 1.0)


@pytest.mark.parametrize("shape", [(8, 3, 5, 5), (1, 3, 4, 4), (6, 3)])
def test_bn_adapt_mixes_source_and_batch_statistics(shape):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3) if len(shape) == 4 else torch.nn.BatchNorm1d(3)
    bn.running_mean, bn.running_var = torch.randn(3), torch.rand(3) + 0.5
    bn.weight.data, bn.bias.data = torch.randn(3), torch.randn(3)
    x = 2 + 3 * torch.randn(shape)
    dims = [0, *range(2, x.dim())]
    for prior in (0.0, 4.0, 1e9):
        w = prior / (prior + shape[0])  # weighed by samples, not pixels
        mean = w * bn.running_mean + (1 - w) * x.mean(dims)
        var = w * bn.running_var + (1 - w) * x.var(dims, unbiased=False)
        expected = F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)
        if prior == 0 and shape[0] == 1:
            continue  # a batch of one sample has no statistics without a prior
        got = BN_ADAPT.MixedStatsBN(bn, prior)(x)
        assert torch.allclose(got, expected, atol=1e-4), prior


def test_lame_affinities():
    x = F.normalize(torch.randn(30, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    w = LAME.affinity(x, "knn", 5)
    assert torch.equal(w, dense_knn(x, 5))
    assert (w.sum(1) == 5).all() and (w.diagonal() == 0).all() and not torch.equal(w, w.T)
    assert torch.allclose(LAME.affinity(x, "linear", 5), x @ x.T)
    rbf = LAME.affinity(x, "rbf", 3)
    sigma = torch.cdist(x, x).fill_diagonal_(float("inf")).topk(3, largest=False).values[:, -1].mean()
    assert torch.allclose(rbf, torch.exp(-(torch.cdist(x, x) ** 2) / (2 * sigma**2)), atol=1e-6)
    assert (LAME.affinity(x[:1], "knn", 5) == 0).all()  # a single image has no neighbours


def test_lame_fixes_predictions_that_disagree_with_their_neighbours():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    feats = F.normalize(torch.randn(40, 16, generator=g) * 0.3 + 3 * F.one_hot(labels, 16).float(), dim=1)
    wrong = torch.rand(40, generator=g) < 0.3
    noisy = torch.where(wrong, 1 - labels, labels)
    log_p = torch.log(F.one_hot(noisy, 2).float() * 0.3 + 0.35)  # p = 0.65 for the (noisy) predicted class
    logits, steps = LAME.laplacian_optimization(log_p, LAME.affinity(feats, "knn", 5))
    assert wrong.any() and (logits.argmax(1) == labels).all()
    assert 2 <= steps < LAME.MAX_STEPS
    y = logits.softmax(1)  # converged: Y is a fixed point of Y = softmax(log p + W Y)
    w = LAME.affinity(feats, "knn", 5)
    assert torch.allclose(y, (log_p + w @ y).softmax(1), atol=1e-4)
    unchanged, _ = LAME.laplacian_optimization(log_p, torch.zeros(40, 40))
    assert torch.allclose(unchanged.softmax(1), log_p.softmax(1))


def test_lame_never_changes_the_model_and_uses_features(source):
    method = ready("lame", source)
    before = copy.deepcopy(method.state_dict())
    x = batch()
    assert torch.allclose(method.predict(x), method.predict_features(method.model.features(x)))
    assert states_equal(method.state_dict(), before) and method.trainable_parameters() == 0


# --------------------------------------------------------------------------- losses and filters
def test_shot_information_maximization():
    confident_diverse = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    confident_collapsed = torch.tensor([[10.0, 0.0], [10.0, 0.0]])
    im = SHOT.information_maximization
    assert im(confident_diverse) == pytest.approx(-math.log(2), abs=1e-3)
    assert im(confident_collapsed) == pytest.approx(0.0, abs=1e-3)


def test_eata_skips_unreliable_batches_and_estimates_fisher(source):
    method = ready("eata", source, e_margin=0.0, fisher_size=16)
    before = copy.deepcopy(method.state_dict())
    method.predict(batch())
    assert states_equal(method.state_dict(), before) and not method.has_mean
    assert all((f >= 0).all() for f in method.fisher) and sum(f.sum() for f in method.fisher) > 0


def test_sar_recovers_by_resetting(source):
    method = ready("sar", source, e_margin=1.0, reset_constant=100.0)
    method.predict(batch())
    assert method.recoveries == 1 and states_equal(method.state_dict(), method._initial["model"])


def test_sar_keeps_the_top_quarter_of_stages_frozen():
    vit = create_backbone("debug_vit")  # 2 blocks: block 1 and the final norm stay frozen
    names = {id(p): n for n, p in vit.trunk.named_parameters()}
    chosen = [names[id(p)] for p in lower_norm_parameters(vit)]
    assert chosen == [
        "blocks.0.norm1.weight",
        "blocks.0.norm1.bias",
        "blocks.0.norm2.weight",
        "blocks.0.norm2.bias",
    ]
    resnet = create_backbone("timm:test_resnet")
    chosen = {
        names
        for names, p in resnet.trunk.named_parameters()
        if any(p is q for q in lower_norm_parameters(resnet))
    }
    assert (
        chosen
        and not any(n.startswith("layer4") for n in chosen)
        and any(n.startswith("layer3") for n in chosen)
    )
    assert len(lower_norm_parameters(create_backbone("small_cnn"))) == 2 * 3  # BN of stages 1-3


# --------------------------------------------------------------------------- CoTTA
def test_cotta_teacher_and_stochastic_restore(source):
    method = ready("cotta", source, n_augment=2, rst=1.0)
    method.predict(batch())  # rst = 1: every weight returns to its source value
    for (n, p), q in zip(method.model.named_parameters(), method.anchor.parameters()):
        if n.endswith(("weight", "bias")):
            assert torch.equal(p, q), n
    method = ready("cotta", source, n_augment=2, rst=0.0, mt=0.0)
    method.predict(batch())  # mt = 0: the teacher is the student
    assert all(torch.equal(t, s) for t, s in zip(method.teacher.parameters(), method.model.parameters()))


def test_augmentations_are_per_image_and_identity_at_zero_strength():
    x = batch(8, 32)
    torch.manual_seed(0)
    a = tta_augment(x)
    torch.manual_seed(0)
    assert torch.equal(a, tta_augment(x)) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    first = tta_augment(x[:1].expand(4, -1, -1, -1))
    assert not torch.allclose(first[0], first[1])  # every image draws its own parameters
    still = {k: (1.0, 1.0) if isinstance(v, tuple) else 0.0 for k, v in STANDARD.items()}
    still["hue"] = (0.0, 0.0)
    assert torch.allclose(color_jitter(x, still), x, atol=1e-5)
    assert torch.allclose(random_affine(x, still), x, atol=1e-5)


class Shifts:
    """A deterministic stand-in for an augmentation: copy j of image i gets noise[j * B + i]."""

    def __init__(self, noise):
        self.noise, self.used = noise, 0

    def __call__(self, v):
        self.used += len(v)
        return v + self.noise[self.used - len(v) : self.used]


@pytest.mark.parametrize("copies_per_pass", [1, 3, 5])
def test_augmented_copies_batched_give_what_one_pass_per_copy_gives(copies_per_pass):
    torch.manual_seed(0)
    model = create_backbone({"name": "small_cnn", "width": 4, "image_size": 8})
    model.reset_head(10)
    use_batch_statistics(model)  # every copy must be normalised with its own statistics
    x, noise = torch.rand(6, 3, 8, 8), 0.3 * torch.randn(5 * 6, 3, 8, 8)
    with torch.no_grad():
        expected = torch.stack([model(x + noise[6 * j : 6 * j + 6]) for j in range(5)]).mean(0)
    shifts = Shifts(noise)
    got = augmented_mean(model, x, 5, shifts, max_elements=copies_per_pass * x.numel())
    assert shifts.used == 30 and torch.allclose(got, expected, atol=1e-5)
    pooled = torch.no_grad()(model)(x.repeat(5, 1, 1, 1) + noise).view(5, 6, -1).mean(0)
    assert not torch.allclose(pooled, expected, atol=1e-3)  # statistics over all copies differ


# --------------------------------------------------------------------------- ITTA
def test_itta_building_blocks():
    h = torch.rand(4, 8, 5, 5)
    assert torch.equal(ITTA.AffineChain((8, 5, 5), 5, relu=True)(h), h)  # identity on ReLU outputs
    signed = torch.randn(4, 17, 8)
    assert torch.equal(ITTA.AffineChain((17, 8), 5, relu=False)(signed), signed)
    # ViT tokens: per-token statistics mix, so each token's pattern stays; half of them mix
    torch.manual_seed(0)
    tokens = torch.randn(64, 17, 8)
    mixed = ITTA.mixstyle(tokens)
    assert torch.allclose(F.layer_norm(mixed, (8,)), F.layer_norm(tokens, (8,)), atol=1e-3)
    assert 0.4 < (mixed == tokens).all(-1).float().mean() < 0.6
    assert torch.allclose(ITTA.mixstyle(h[:1]), h[:1], atol=1e-5)  # one sample mixes with itself
    same = h[:1].expand(4, -1, -1, -1)
    assert torch.allclose(ITTA.mixstyle(same), same, atol=1e-5)
    assert len(stage_modules(create_backbone("debug_vit"))) == 2
    assert len(stage_modules(create_backbone("small_cnn"))) == 4
    assert len(stage_modules(create_backbone("timm:test_resnet"))) == 4


def test_stage_probe_finds_which_stages_end_in_a_relu():
    """ReLU-ended stages (ResNet, small_cnn) are non-negative; ViT tokens and ConvNeXt stages
    (residual sums) are signed, whatever kind the backbone declares."""
    probe = {
        name: [s.nonnegative for s in probe_stages(b, b.image_size)]
        for name in ("small_cnn", "debug_vit", "timm:test_resnet", "timm:test_convnext")
        for b in [create_backbone({"name": name, "image_size": 32} if "timm" in name else name)]
    }
    assert probe["small_cnn"] == [True] * 4 and probe["timm:test_resnet"] == [True] * 4
    assert probe["debug_vit"] == [False] * 2
    assert not any(probe["timm:test_convnext"])
    b = create_backbone("small_cnn")
    state = torch.get_rng_state()
    assert probe_stages(b, 32)[0].shape == (32, 32, 32)
    assert torch.equal(torch.get_rng_state(), state)  # the probe leaves the global random state alone


def test_itta_trains_its_loss_and_adapts_only_the_chains(source):
    method = ready("itta", source)
    assert method.record_fields == {"backbone_stages": ["blocks.0", "blocks.1"]}  # copied into the record
    identity = ITTA.AffineChain((method.model.feature_dim,), method.hparams.loss_depth, relu=True)
    assert not torch.equal(method.loss_net.weight, identity.weight)  # f_w was trained to align gradients
    frozen = {n: p.clone() for n, p in method.model.named_parameters()}
    method.predict(batch())
    assert all(torch.equal(p, frozen[n]) for n, p in method.model.named_parameters())
    assert method.trainable_parameters() == sum(p.numel() for p in method.adaptive.parameters())
    assert method.trainable_parameters() == 2 * 5 * 2 * (17 * 32)  # (w, b) x depth x blocks x tokens x width
    per_batch = ready("itta", source, reset="per_batch")
    torch.manual_seed(3)
    a = per_batch.predict(batch())
    torch.manual_seed(3)
    assert torch.allclose(a, per_batch.predict(batch()), atol=1e-6)
    assert ready("itta", source, reset="per_domain").reset_on_domain_change


def test_itta_on_a_resnet(source):
    data = digits(split="train", image_size=32)
    method = ready(
        "itta",
        data.subset(np.arange(0, len(data), 80)),
        backbone={"name": "timm:test_resnet", "image_size": 32},
        lr=1e-2,
    )
    before = method.model(batch(6, 32)).detach()
    after = method.predict(batch(6, 32))
    assert after.shape == (6, 10) and not torch.allclose(before, after)
