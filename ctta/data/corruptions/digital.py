"""Digital corruptions: brightness, saturate, contrast, elastic transform, pixelate, JPEG."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import _gaussian_blur, _hsv_adjust, _rand, _separable


def _brightness(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """HSV value + c (clipped), hue and saturation kept. Exact."""
    return _hsv_adjust(x, lambda v: (v + c).clamp(0, 1), lambda sat: sat)


def _saturate(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """HSV saturation * c0 + c1 (clipped), hue and value kept. Exact."""
    return _hsv_adjust(x, lambda v: v, lambda sat: (sat * c[0] + c[1]).clamp(0, 1))


def _contrast(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """(x - mean) * c + mean with per-image, per-channel means. Exact."""
    return torch.lerp(x.mean((2, 3), keepdim=True), x, c)  # mean + c * (x - mean)


def _elastic_transform(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Random affine warp, then a smooth random displacement field. Exact port up to interpolation
    arithmetic (OpenCV's warpAffine rounds source coordinates to 1/32 pixel; here they are exact).

    Affine: three points around the centre (offsets +-min(H, W) // 3) move by U(-c2, c2); bilinear
    warp with OpenCV's reflect-101 border (``grid_sample`` reflection, ``align_corners=True``).
    Displacement: c0 * gaussian(U(-1, 1), sigma c1, mode 'reflect', truncate 3) per axis; bilinear
    ``map_coordinates`` with scipy's half-sample 'reflect' (reflection, ``align_corners=False``). The
    ImageNet constants keep the original's 244 for 224.
    """
    alpha, sigma, jitter = (v * s for v in c)
    b, _, h, w = x.shape
    dev = x.device
    cx, cy, sq = w // 2, h // 2, min(h, w) // 3
    src = torch.tensor(
        [[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], device=dev, dtype=torch.float64
    )
    dst = src + jitter * (2 * _rand(gen, b, 3, 2, like=src) - 1)
    # warpAffine samples the source at M^-1(output pixel): solve for the affine map dst -> src.
    inverse = torch.linalg.solve(
        torch.cat([dst, torch.ones(b, 3, 1, device=dev, dtype=dst.dtype)], 2), src.expand(b, 3, 2)
    )
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3).to(torch.float64)
    where = (pixels @ inverse).view(b, h, w, 2)
    size = torch.tensor([w - 1, h - 1], device=dev, dtype=torch.float64)
    grid = (2 * where / size - 1).to(x.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

    field = alpha * _gaussian_blur(
        2 * _rand(gen, b, 2, h, w, like=x) - 1, sigma, mode="symmetric", truncate=3.0
    )
    coords = torch.stack([xs + field[:, 0], ys + field[:, 1]], -1)
    grid = (2 * coords + 1) / torch.tensor([w, h], device=dev, dtype=x.dtype) - 1
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _pil_box_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """[n_out, n_in] weights of Pillow's BOX resampling (ImagingResample's precompute_coeffs)."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    centre = (torch.arange(n_out, device=like.device, dtype=torch.float64)[:, None] + 0.5) * scale
    j = torch.arange(n_in, device=like.device, dtype=torch.float64)[None, :]
    lo, hi = torch.floor(centre - support + 0.5), torch.floor(centre + support + 0.5)
    u = (j - centre + 0.5) / max(scale, 1.0)
    weights = ((u > -0.5) & (u <= 0.5) & (j >= lo) & (j < hi)).to(torch.float64)
    return (weights / weights.sum(1, keepdim=True).clamp_min(1)).to(like.dtype)


def _pixelate(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """Pillow BOX resize to int(size * c) and back. Exact linear port (both resizes are one matrix
    per axis); Pillow additionally rounds to 8 bits after each pass."""
    mats = [_pil_box_matrix(int(n * c), n, x) @ _pil_box_matrix(n, int(n * c), x) for n in x.shape[-2:]]
    return _separable(x, *mats)


def _jpeg_compression(x: Tensor, c: int, s: float, gen: torch.Generator) -> Tensor:
    """Real JPEG round trip at quality c (torchvision's libjpeg-turbo on CPU, nvjpeg on CUDA) of the
    8-bit rounded image. On CPU this matches Pillow's ``save(quality=c)`` + decode bit for bit."""
    from torchvision.io import decode_jpeg, encode_jpeg  # lazy: only this corruption needs torchvision

    # CHW views of HWC-contiguous images: encode_jpeg's own permute(1, 2, 0).contiguous() is then a
    # no-op instead of one small parallel copy per image (10x slower than the encoding itself on CPU).
    hwc = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    encoded = [data.cpu() for data in encode_jpeg([img.permute(2, 0, 1) for img in hwc], quality=c)]
    return torch.stack(decode_jpeg(encoded, device=x.device)).to(x.dtype) / 255
