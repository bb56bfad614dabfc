"""Batched random augmentations of [0, 1] images, each image with its own random parameters.

`tta_augment` is the augmentation CoTTA (Wang et al., CVPR 2022) averages its teacher over,
and that later mean-teacher methods (RMT, AdaContrast's weak view) reuse: colour jitter
(brightness, contrast, saturation, hue, gamma), a random affine map (rotation, translation,
scale) with edge padding, a small Gaussian blur, a horizontal flip and Gaussian noise, with
the ranges of CoTTA's `get_tta_transforms`. The reference applies torchvision transforms,
i.e. one random draw for the whole batch; here every image draws its own parameters, the
colour operations run in a fixed order, and the hue shift is a rotation of the chroma plane
in YIQ space (close to HSV's hue rotation for small angles).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
