"""Batched random augmentations of [0, 1] images, each image with its own random parameters.

`tta_augment` is the augmentation CoTTA (Wang et al., CVPR 2022) averages its teacher over,
and that later mean-teacher methods (RMT, AdaContrast's weak view) reuse: colour jitter
(brightness, contrast, saturation, hue, gamma), a random affine map (rotation, translation,
scale) with edge padding, a small Gaussian blur, a horizontal flip and Gaussian noise, with
the ranges of CoTTA's `get_tta_transforms`. The reference applies torchvision transforms,
i.e. one random draw for the whole batch; here every image draws its own parameters, the
colour operations run in a fixed order, and the hue shift is a rotation of the chroma plane
in YIQ space (close to HSV's hue rotation for small angles).

`augmented_mean` averages a model's outputs over many augmented copies of a batch in few
forward passes: the copies go through the model together (in chunks that fit a budget), and
every BatchNorm layer that normalises with batch statistics normalises each copy with its
own, so the result is what one forward pass per copy gives (up to float rounding).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

STANDARD = {
    "brightness": (0.6, 1.4),
    "contrast": (0.7, 1.3),
    "saturation": (0.5, 1.5),
    "hue": (-0.06, 0.06),
    "gamma": (0.7, 1.3),
    "degrees": 15.0,
    "translate": 1 / 16,
    "scale": (0.9, 1.1),
    "blur_sigma": (0.001, 0.5),
}
SOFT = {
    **STANDARD,
    "brightness": (0.8, 1.2),
    "contrast": (0.85, 1.15),
    "saturation": (0.75, 1.25),
    "hue": (-0.03, 0.03),
    "gamma": (0.85, 1.15),
    "degrees": 8.0,
    "scale": (0.95, 1.05),
    "blur_sigma": (0.001, 0.25),
}
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def color_jitter(x: torch.Tensor, r: dict) -> torch.Tensor:
    n = x.shape[0]
    x = (x * _per_image(_uniform(n, *r["brightness"], x))).clamp(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * _per_image(_uniform(n, *r["contrast"], x))).clamp(0, 1)
    gray = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (gray + (x - gray) * _per_image(_uniform(n, *r["saturation"], x))).clamp(0, 1)
    angle = _uniform(n, *r["hue"], x) * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    to_yiq = _RGB_TO_YIQ.to(x)
    mix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # [n, 3, 3]
    x = torch.einsum("nij,njhw->nihw", mix, x).clamp(0, 1)
    return x.clamp_min(1e-8) ** _per_image(_uniform(n, *r["gamma"], x))


def random_affine(x: torch.Tensor, r: dict) -> torch.Tensor:
    n = x.shape[0]
    angle = _uniform(n, -r["degrees"], r["degrees"], x) * math.pi / 180
    scale = _uniform(n, *r["scale"], x)
    shift = _uniform(2 * n, -2 * r["translate"], 2 * r["translate"], x).view(n, 2)  # grid units span 2
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale, -angle.sin() / scale
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale, angle.cos() / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_blur(x: torch.Tensor, r: dict, size: int = 5) -> torch.Tensor:
    n, c, h, w = x.shape
    sigma = _uniform(n, *r["blur_sigma"], x)
    t = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, size]
    y = F.pad(x.reshape(1, n * c, h, w), (size // 2,) * 4, mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, size, 1), groups=n * c)
    return y.view(n, c, h, w)


def tta_augment(
    x: torch.Tensor, *, soft: bool = False, flip: bool = True, noise_std: float = 0.005
) -> torch.Tensor:
    """One random augmentation of every image of x (float [B, 3, H, W] in [0, 1])."""
    r = SOFT if soft else STANDARD
    x = random_affine(color_jitter(x.clamp(0, 1), r), r)
    x = gaussian_blur(x, r)
    if flip:
        flipped = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(_per_image(flipped), x.flip(-1), x)
    return (x + noise_std * torch.randn_like(x)).clamp(0, 1)


# Input elements per forward pass of `augmented_mean`. On a CPU, larger passes run slower per
# image: a ResNet-20's activations leave the cache (CoTTA's 32 copies of a 64-image CIFAR
# batch, one core: 7.9 s at one copy per pass, 9.9 s at 4, 14.5 s at 8), so a pass holds about
# one 64-image 32 px batch. On a GPU, one large pass replaces many small kernel launches:
# 2**26 elements hold all 32 copies of a CIFAR batch, or 445 ImageNet images.
FORWARD_ELEMENTS = {"cpu": 2**18, "cuda": 2**26}


@torch.no_grad()
def augmented_mean(
    model: nn.Module,
    x: torch.Tensor,
    n: int,
    augment: Callable[[torch.Tensor], torch.Tensor] = tta_augment,
    max_elements: int | None = None,
) -> torch.Tensor:
    """Mean of `model`'s outputs over `n` augmented copies of the batch x, as `n` separate
    forward passes would give it; `augment` draws per image (it gets several copies at once).
    Copies are batched up to `max_elements` input elements per pass (default:
    `FORWARD_ELEMENTS` of x's device); one copy per pass where a BatchNorm layer in training
    mode updates running statistics (their order of updates would change)."""
    b = x.shape[0]
    budget = max_elements or FORWARD_ELEMENTS.get(x.device.type, FORWARD_ELEMENTS["cuda"])
    per_pass = 1 if _updates_running_stats(model) else max(1, min(n, budget // max(x.numel(), 1)))
    total = None
    for start in range(0, n, per_pass):
        k = min(per_pass, n - start)
        with batch_statistics_per_group(model, k):
            out = model(augment(x.repeat(k, *([1] * (x.dim() - 1))))).view(k, b, -1).sum(0)
        total = out if total is None else total + out
    return total / n


def _updates_running_stats(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.running_mean is not None
        for m in model.modules()
    )


@contextlib.contextmanager
def batch_statistics_per_group(model: nn.Module, groups: int) -> Iterator[None]:
    """Within the context, every BatchNorm layer of `model` that normalises with batch
    statistics treats its input as `groups` consecutive batches of equal size, each
    normalised with its own statistics (running statistics are neither used nor updated)."""
    layers = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None)
    ]
    if groups == 1:
        yield
        return
    for m in layers:
        m.forward = _grouped_batch_norm(m, groups)  # an instance attribute shadows the method
    try:
        yield
    finally:
        for m in layers:
            del m.forward


def _grouped_batch_norm(layer: nn.modules.batchnorm._BatchNorm, groups: int):
    # One native batch norm per group: the same kernel as one pass per group, on contiguous
    # slices (statistics over strided group dimensions ran 10x slower on a CPU).
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                F.batch_norm(part, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)
                for part in x.chunk(groups)
            ]
        )

    return forward
