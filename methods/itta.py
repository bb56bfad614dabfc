"""ITTA: improved test-time adaptation with a learned consistency loss and adaptive parameters.

Chen, Zhang, Song, Shan, Liu: "Improved Test-Time Adaptation for Domain Generalization"
(CVPR 2023). ITTA changes both training and testing:

- Training on the source domains. For features z of an image and z′ of a feature-level
  MixStyle view of it (instance statistics mixed with another image's after the first or
  second stage, each with probability ½; on ViT tokens each token's statistics over the
  channels, for a random half of the tokens, see `mixstyle`), a *learnable consistency loss*
  L_w = ‖f_w(z′ − z)‖² is added to the classification loss of both views; f_w is a chain of
  element-wise affine+ReLU layers (depth 10, initialised to identity). The backbone and
  classifier minimise CE(z) + CE(z′) + L_w; f_w's parameters w minimise the distance between
  the standardised gradients (w.r.t. the backbone) of L_w and of the classification loss,
  ‖∇L_w/σ − ∇CE/σ‖² (weight 0.1, Adam at 0.1× the source learning rate), so that minimising
  L_w at test time moves the backbone the way the labelled loss would.
- Testing. The backbone, classifier and f_w are frozen; *adaptive parameters* (element-wise
  affine chains of depth 5, identity at initialisation) are inserted after every backbone
  stage. For each test batch they take one Adam step on the frozen learned loss L_w of a
  MixStyle view of the batch, then the batch is predicted with them.

The original is written for ResNet-18 (chains after layer1..layer4 on C×H×W maps). Here the
insertion points are the stages of `ctta.kit.backbone_stages`: after every timm ViT block on
the token features (N×D), after layer1..N of ResNets, after each conv stage of small_cnn, after
what the backbone option `stages=` declares; a network without them is refused with an error
that names `stages=`. The run record names them (`backbone_stages`).
Stages whose outputs are signed (ViT tokens, ConvNeXt and Swin stages; probed with
`ctta.kit.probe_stages`) get chains without ReLU between their affine layers (a ReLU would not
be the identity at initialisation); stages that end in a ReLU keep the original affine+ReLU
chain, the identity at initialisation there.

Deviations: the source recipe (epochs, optimiser, label smoothing 0.1, head initialisation,
BatchNorm statistics recomputed on the source data at the end) is the stream's ERM recipe, so
ITTA and the ERM source model differ only by ITTA's losses; BatchNorm layers train during
source training (small_cnn starts from scratch; the original freezes a pretrained ResNet's
BN); on ViT token features MixStyle mixes each token's mean and standard deviation over the
channels (the statistics LayerNorm removes) instead of each channel's over the tokens: the
latter are the average-pooled feature itself, which the residual stream carries to the
output, so mixing them swaps content between images and the classification loss of the
mixed view trains on the wrong label (source accuracy 31 % instead of ERM's 90 % on the
tiny ViT); and only a random half of the tokens mix (as TFS-ViT, Noori et al. 2023, stylises a
subset of the tokens): with every token mixed, ITTA's own source model lost 3.5 points to ERM
on the tiny ViT over 7 seeds (up to 14.8 on one), because a token's statistics also say where
the object is; the reference code multiplies the test loss by 1e-6 ("ada_lr") under Adam, which
only damps the step where gradients fall below Adam's ε: we tune the step size `lr` instead.
`reset` (never, as in the original; per_domain; per_batch) chooses when the adaptive
parameters return to the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ctta import hp, register_method
from ctta.kit import (
    TestTimeMethod,
    add_stage_hooks,
    backbone_stages,
    cached_training,
    content_key,
    fit,
    freeze,
    make_optimizer,
    probe_stages,
    recompute_batchnorm_statistics,
    train_only,
)

ITTA_VERSION = 3  # 2: token statistics on ViTs, ERM's head initialisation, precise BN; 3: half the tokens
MIX_STAGES = 2  # MixStyle after the first or the second stage, as in the original


class AffineChain(nn.Module):
    """Element-wise affine layers (optionally with ReLU between them), identity at initialisation."""

    def __init__(self, shape: tuple[int, ...], depth: int, relu: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(depth, *shape))
        self.bias = nn.Parameter(torch.zeros(depth, *shape))
        self.relu = relu

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.weight)):
            h = self.weight[i] * h + self.bias[i]
            if self.relu and i < len(self.weight) - 1:
                h = F.relu(h)
        return h


def mixstyle(h: torch.Tensor, alpha: float = 0.1, eps: float = 1e-6) -> torch.Tensor:
    """MixStyle (Zhou et al., ICLR 2021): each sample's feature statistics (per channel, over
    space for maps [B, C, H, W]; per token, over channels for [B, N, D]) mixed with a random
    other sample's. A ViT's per-channel statistics over tokens are its pooled content, not its
    style: the per-token ones are what LayerNorm removes, as instance norm removes a CNN's.
    Tokens mix on a random half of them (as TFS-ViT stylises a subset of the tokens): every
    token's statistics also tell where an image's object is (on glyphs, which patches hold ink),
    so mixing all of them moves shape between images."""
    dims = (2, 3) if h.dim() == 4 else (2,)
    shape = (h.shape[0],) + (1,) * (h.dim() - 1)
    mu = h.mean(dims, keepdim=True).detach()
    sig = (h.var(dims, keepdim=True) + eps).sqrt().detach()
    lam = torch.distributions.Beta(alpha, alpha).sample(shape).to(h)
    perm = torch.randperm(h.shape[0], device=h.device)
    mixed = (h - mu) / sig * (lam * sig + (1 - lam) * sig[perm]) + (lam * mu + (1 - lam) * mu[perm])
    if h.dim() == 3:
        mixed = torch.where(torch.rand(*h.shape[:2], 1, device=h.device) < 0.5, h, mixed)
    return mixed


def standardized(grads: list[torch.Tensor]) -> torch.Tensor:
    g = torch.cat([t.reshape(-1) for t in grads])
    return (g - g.mean().detach()) / g.std().detach().clamp_min(1e-12)


@register_method("itta")
class ITTA(TestTimeMethod):
    """Learned consistency loss at training, adaptive affine chains at test (Chen et al., CVPR 2023)."""

    trains_source = True

    @dataclass
    class HParams(TestTimeMethod.HParams):
        lr: float = hp(1e-4, space=(1e-5, 1e-4, 1e-3), doc="Adam step size of the adaptive parameters", gt=0)
        reset: Literal["never", "per_domain", "per_batch"] = hp(
            "never", doc="when the adaptive parameters return to identity (the original never resets)"
        )
        steps: int = hp(1, doc="steps on the learned loss per test batch", ge=1)
        mapping_depth: int = hp(5, doc="affine layers per adaptive chain", ge=1)
        loss_depth: int = hp(10, doc="training: affine layers of the learned loss f_w", ge=1)
        align_weight: float = hp(0.1, doc="training: weight of the gradient-alignment objective of f_w", ge=0)
        loss_lr_factor: float = hp(0.1, doc="training: f_w's Adam step size relative to the source lr", gt=0)

    @classmethod
    def check_compatible(cls, backbone, info):
        super().check_compatible(backbone, info)
        backbone_stages(backbone)  # UserError saying how to declare stages=

    def setup(self, backbone, info):
        h = self.hparams
        self.model = backbone
        self.reset_on_domain_change = h.reset == "per_domain"
        stages = backbone_stages(backbone)
        self.stages = list(stages.modules)
        self.record_fields = {"backbone_stages": list(stages.paths)}
        self._mix_at: int | None = None
        self._chains_on = False
        self._hooks = add_stage_hooks(self.stages, self._after_stage)
        outputs = probe_stages(backbone, info.image_size, info.device)
        if backbone.head is None or not backbone.head_is_trained:
            backbone.reset_head(info.num_classes)
        self.loss_net = AffineChain((backbone.feature_dim,), h.loss_depth, relu=True).to(info.device)
        self._train_source()
        freeze(backbone).eval()
        freeze(self.loss_net)
        self.adaptive = nn.ModuleList(
            AffineChain(out.shape, h.mapping_depth, relu=out.nonnegative) for out in outputs
        ).to(info.device)
        self._chains_on = True
        self.optimizer = make_optimizer(train_only(self.adaptive.parameters(), self.adaptive), "adam", h.lr)

    # -- feature hooks -----------------------------------------------------------------------
    def _after_stage(self, i: int, out: torch.Tensor) -> torch.Tensor:
        if self._mix_at == i:  # a MixStyle view of the batch travels alongside it from here on
            out = torch.cat([out, mixstyle(out)])
        if self._chains_on:
            out = self.adaptive[i](out)
        return out

    def _views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of x and of its MixStyle view (mixed after a random one of the first stages)."""
        self._mix_at = int(torch.randint(min(MIX_STAGES, len(self.stages)), ()))
        try:
            z, z_aug = self.model.features(x).chunk(2)
        finally:
            self._mix_at = None
        return z, z_aug

    def _learned_loss(self, z: torch.Tensor, z_aug: torch.Tensor) -> torch.Tensor:
        return self.loss_net(z_aug - z).pow(2).mean()

    # -- training on the source domains ----------------------------------------------------
    def _train_source(self) -> None:
        h, info = self.hparams, self.info
        recipe = info.extra["source_recipe"]
        key = content_key(
            {
                "method": "itta",
                "version": ITTA_VERSION,
                "backbone": self.model.identity,
                "source": info.source.identity(),
                "recipe": recipe,
                "num_classes": info.num_classes,
                "loss": [h.loss_depth, h.align_weight, h.loss_lr_factor],
            }
        )
        cached_training(nn.ModuleList([self.model, self.loss_net]), key, lambda: self._fit(recipe))
        self.model.head_is_trained = True

    def _fit(self, recipe: dict) -> None:
        h, model = self.hparams, self.model
        torch.manual_seed(recipe["seed"])
        if not model.head_is_trained:  # the ERM source model's head initialisation (source_model)
            model.reset_head(self.info.num_classes)
        model.train()
        for m in model.modules():  # double backward needs timm's attention without the fused kernel
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        trunk = [p for p in model.trunk.parameters() if p.requires_grad]
        loss_params = list(self.loss_net.parameters())
        loss_opt = torch.optim.Adam(loss_params, lr=recipe["lr"] * h.loss_lr_factor)
        pending: list[torch.Tensor] = []

        def loss_fn(x, y):
            z, z_aug = self._views(x)
            classification = F.cross_entropy(model.head(z), y, label_smoothing=0.1) + F.cross_entropy(
                model.head(z_aug), y, label_smoothing=0.1
            )
            consistency = self._learned_loss(z, z_aug)
            g_loss = torch.autograd.grad(consistency, trunk, create_graph=True, allow_unused=True)
            g_cls = torch.autograd.grad(classification, trunk, retain_graph=True, allow_unused=True)
            pairs = [(a, b) for a, b in zip(g_loss, g_cls) if a is not None and b is not None]
            align = (standardized([a for a, _ in pairs]) - standardized([b for _, b in pairs]).detach()).pow(
                2
            )
            pending[:] = torch.autograd.grad(h.align_weight * align.mean(), loss_params, retain_graph=True)
            return classification + consistency

        def step_loss_net():  # after the backbone's step: f_w may not change under its graph
            for p, g in zip(loss_params, pending):
                p.grad = g
            loss_opt.step()

        fit(
            list(model.parameters()),
            self.info.source,
            loss_fn,
            epochs=recipe["epochs"],
            batch_size=recipe["batch_size"],
            lr=recipe["lr"],
            optimizer=recipe["optimizer"],
            weight_decay=recipe.get("weight_decay", 0.0),
            seed=recipe["seed"],
            device=self.info.device,
            after_step=step_loss_net,
            desc=f"ITTA source model ({self.info.source.name}, seed {recipe['seed']})",
        )
        recompute_batchnorm_statistics(
            model, self.info.source, batch_size=recipe["batch_size"], device=self.info.device
        )

    # -- test time ---------------------------------------------------------------------------
    def adapt(self, x):
        if self.hparams.reset == "per_batch":
            self.reset()
        for _ in range(self.hparams.steps):
            loss = self._learned_loss(*self._views(x))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            return self.model(x)
