"""Weather corruptions: snow, frost, fog, spatter."""

from __future__ import annotations

import functools
import io
import math
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .ops import (
    _box_blur3,
    _clipped_zoom,
    _correlate_fft,
    _floor_u8,
    _gaussian_blur,
    _motion_blur,
    _pad,
    _plasma_fractal,
    _rand,
    _randn,
)


def _snow(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Thresholded zoomed Gaussian noise, 8-bit truncated, motion blurred at an angle in
    [-135, -45] degrees, added twice (once rotated by 180 degrees) to a greyed, brightened image.
    Same formula as the original; the motion blur is ``_motion_blur`` instead of ImageMagick. The
    flake zoom (at least 1) and the blur radius and sigma scale with the image size."""
    b, _, h, w = x.shape
    layer = c[0] + c[1] * _randn(gen, b, 1, h, w, like=x)
    layer = _clipped_zoom(layer, max(c[2] * s, 1.0))
    layer = _floor_u8(torch.where(layer < c[3], 0.0, layer).clamp(0, 1))
    layer = _motion_blur(layer, c[4] * s, c[5] * s, _rand(gen, b, like=x) * 90 - 135)
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) * 1.5 + 0.5  # cv2 RGB2GRAY
    x = c[6] * x + (1 - c[6]) * torch.maximum(x, grey)
    return x + layer + layer.flip(-2, -1)


# The five photographs the original draws from (``randint(5)``; its third is the second's pixels
# again): see frost/NOTICE.md.
_FROST_FILES = ("frost1.png", "frost2.png", "frost2.png", "frost4.jpg", "frost5.jpg")


@functools.lru_cache(maxsize=8)
def _frost_photos(
    pixel: float, h: int, w: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, ...]:
    """The photographs as [3, H, W] tensors in [0, 1], resized by ``pixel`` (photo pixels are
    ``pixel`` image pixels) with bilinear interpolation at half-pixel centres, as OpenCV's
    default ``cv2.resize`` (at the CIFAR script's 0.2 that samples every fifth pixel exactly), and
    enlarged further where a crop of h x w would not fit. Cached: every batch reuses them."""
    folder = resources.files(__package__) / "frost"
    photos = []
    for name in _FROST_FILES:
        with Image.open(io.BytesIO((folder / name).read_bytes())) as image:
            photo = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        photo = photo.to(device, dtype)[None] / 255
        ph, pw = photo.shape[-2:]
        if int(ph * pixel) >= h and int(pw * pixel) >= w:
            if pixel != 1:  # OpenCV's sampling positions: a scale of exactly 1 / pixel, not in / out
                photo = F.interpolate(
                    photo, scale_factor=pixel, mode="bilinear", recompute_scale_factor=False
                )
        else:  # a crop would not fit: enlarge, keeping the aspect ratio
            f = max(pixel, h / ph, w / pw)
            size = (max(h, math.ceil(ph * f)), max(w, math.ceil(pw * f)))
            photo = F.interpolate(photo, size=size, mode="bilinear")
        photos.append(photo[0])
    return tuple(photos)


def _frost(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """c0 * x + c1 * a random h x w crop of one of the five frost photographs (uniform choice and
    offset per image), the photographs shrunk by c2 * s (0.2 for CIFAR, 1 for ImageNet at 224 px).
    Exact: the original's photographs and recipe; only the random draws differ."""
    b, _, h, w = x.shape
    photos = _frost_photos(c[2] * s, h, w, x.dtype, x.device)
    which = (_rand(gen, b, like=x) * len(photos)).long().tolist()
    corner = _rand(gen, b, 2, like=x).tolist()
    crops = []
    for k, (u, v) in zip(which, corner):
        photo = photos[k]
        # randint(0, n - size): the last offset is excluded, as in the original.
        top, left = int(u * max(photo.shape[1] - h, 1)), int(v * max(photo.shape[2] - w, 1))
        crops.append(photo[:, top : top + h, left : left + w])
    return c[0] * x + c[1] * torch.stack(crops)


def _fog(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """(x + c0 * plasma) * max / (max + c0), max over each whole image. Exact port; the fractal
    side is the next power of two >= max(H, W) (32 for CIFAR and 256 for ImageNet, as originally)."""
    b, _, h, w = x.shape
    peak = x.amax((1, 2, 3), keepdim=True)
    fractal = _plasma_fractal(b, max(h, w), c[1], gen, x)[:, None, :h, :w]
    return (x + c[0] * fractal) * peak / (peak + c[0])


def _edge_distance(edges: Tensor, cap: float) -> Tensor:
    """Exact Euclidean distance to the nearest True pixel, capped at ``cap``; batched over leading dims.

    Column pass with cumulative max/min of edge row indices, then a row pass over the 2 * ceil(cap)
    + 1 horizontal offsets that can be within the cap.
    """
    h, w = edges.shape[-2:]
    r = math.ceil(cap)
    rows = torch.arange(h, device=edges.device, dtype=torch.float32)[:, None]
    above = torch.where(edges, rows, -1e9).cummax(-2).values
    below = torch.where(edges, rows, 1e9).flip(-2).cummin(-2).values.flip(-2)
    g2 = torch.minimum(rows - above, below - rows).clamp(max=r + 1) ** 2
    padded = F.pad(g2, (r, r), value=float(r + 1) ** 2)
    best = g2
    for t in range(-r, r + 1):
        best = torch.minimum(best, padded[..., r + t : r + t + w] + t * t)
    return best.sqrt().clamp(max=cap)


def _equalize_hist(v: Tensor) -> Tensor:
    """cv2.equalizeHist per image for integer-valued [B, 1, H, W] tensors in 0..255."""
    idx = v.long().flatten(1)
    hist = torch.zeros(idx.shape[0], 256, dtype=torch.long, device=v.device).scatter_add_(
        1, idx, torch.ones_like(idx)
    )
    first = (hist > 0).long().argmax(1, keepdim=True)
    h0 = hist.gather(1, first)
    scale = 255.0 / (idx.shape[1] - h0).clamp_min(1).float()
    lut = torch.round((hist.cumsum(1) - h0).float() * scale).clamp(0, 255)
    lut = torch.where(h0 == idx.shape[1], first.float(), lut)  # constant image: OpenCV keeps the value
    return lut.gather(1, idx).view_as(v).to(v.dtype)


def _spatter(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Water drops (severities with c5 = 0) or mud (c5 = 1) from a thresholded blurred noise layer.

    Mud is an exact port. Water follows the original OpenCV pipeline with two stand-ins: Canny on the
    8-bit liquid layer is replaced by the inner boundary of the liquid mask (the layer is a smooth
    field above the threshold and 0 elsewhere, so its only strong edges are the mask boundary), and
    the 5x5 chamfer distance transform by the exact Euclidean one. The rest (truncation at 20 px,
    box blurs, 8-bit steps, histogram equalisation, emboss kernel, normalisation) is as original.
    Blur sigmas and the 20 px cap scale with the image size.
    """
    b, _, h, w = x.shape
    liquid = _gaussian_blur(c[0] + c[1] * _randn(gen, b, 1, h, w, like=x), c[2] * s)
    liquid = torch.where(liquid < c[3], 0.0, liquid)
    if c[5]:  # mud
        m = _gaussian_blur((liquid > c[3]).to(x.dtype), c[4] * s)
        m = torch.where(m < 0.8, 0.0, m)
        colour = torch.tensor([63, 42, 20], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255
        return x * (1 - m) + colour * m
    level = torch.floor(liquid.clamp(0, 1) * 255)
    mask = (level > 0).to(x.dtype)
    p = _pad(mask, (1, 1), (1, 1), "replicate")
    eroded = torch.stack(
        [mask, p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]
    ).amin(0)
    dist = _edge_distance(mask > eroded, 20 * s)
    dist = _equalize_hist(torch.floor(_box_blur3(dist)))
    emboss = torch.tensor([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], device=x.device, dtype=x.dtype)
    dist = _correlate_fft(dist, emboss[None], "reflect101").round().clamp(0, 255)
    dist = _box_blur3(dist).round()
    m = level * dist
    m = c[4] * m / m.amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
    colour = torch.tensor([175, 238, 238], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255
    return x + m * colour
