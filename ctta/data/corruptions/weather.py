"""Weather corruptions: snow, frost, fog, spatter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


# Per-photograph statistics of the five frost photographs that the original draws from (its
# ``randint(5)`` never picks the sixth), measured on 200 random 224 px crops of each (the CIFAR
# script's 0.2x-shrunk 32 px crops agree within 0.02): RGB mean, standard deviation of the crop
# means (one shared draw per image), RGB standard deviation within a crop.
_FROST_PHOTOS = (
    ((0.299, 0.579, 0.644), (0.057, 0.031, 0.024), (0.092, 0.055, 0.052)),
    ((0.775, 0.791, 0.827), (0.021, 0.024, 0.025), (0.077, 0.079, 0.082)),
    ((0.776, 0.793, 0.829), (0.023, 0.025, 0.027), (0.077, 0.079, 0.082)),
    ((0.571, 0.629, 0.680), (0.025, 0.024, 0.026), (0.102, 0.102, 0.107)),
    ((0.399, 0.444, 0.490), (0.050, 0.048, 0.045), (0.143, 0.141, 0.138)),
)


def _frost_texture(b: int, h: int, w: int, pixel: float, gen: torch.Generator, like: Tensor) -> Tensor:
    """Procedural stand-in for the frost photographs: [B, 3, h, w] in [0, 1].

    Shape: ice needles of four lengths (4 to 32 photo pixels, one random direction per length and
    image) grow from random seeds whose density follows a plasma-fractal "cover" map, over a haze
    that also follows the cover (drawn by eye after the photographs). Statistics: each image picks
    one of the five photographs, and its texture is standardised and given that photograph's RGB
    mean (plus a crop-to-crop shift) and within-crop contrast (``_FROST_PHOTOS``), so the first two
    moments per channel match the original's mixture. ``pixel`` is the size of a photo pixel in
    image pixels (0.2 s for CIFAR, whose script shrinks the photos by 0.2; s for ImageNet); the
    texture is rendered at photo resolution, at most 2x supersampled, and resized with antialiasing.
    """
    q = min(1 / pixel, 2.0)  # render pixels per image pixel
    f = pixel * q  # render pixels per photo pixel
    rh, rw = max(2, round(h * q)), max(2, round(w * q))
    cover = _plasma_fractal(b, max(rh, rw), 1.8, gen, like)[:, None, :rh, :rw]
    # Needle k (length 4 f 2^k) seeds with probability 0.12 cover^2 / length: one uniform per pixel,
    # scaled so that the bands [0, 1), [1, 1.5), [1.5, 1.75), [1.75, 1.875) pick k = 0..3.
    t = _rand(gen, b, rh, rw, like=like) * (4 * f * f / 0.12) / cover[:, 0].square().clamp_min(1e-6)
    kind = (t >= 1).long() + (t >= 1.5) + (t >= 1.75) + (t >= 1.875)
    angles = torch.deg2rad(_rand(gen, 4, b, like=like) * 360)
    needles = torch.zeros(b, rh, rw, device=like.device, dtype=like.dtype)
    for k in range(4):
        length = 4 * f * 2**k
        bi, y, x = (kind == k).nonzero(as_tuple=True)
        i = torch.arange(math.floor(2 * length) + 1, device=like.device, dtype=like.dtype)
        py = y[:, None] + torch.round(i * torch.sin(angles[k, bi, None])).long()
        px = x[:, None] + torch.round(i * torch.cos(angles[k, bi, None])).long()
        # Taps outside the image add 0 at a clamped position (cheaper than boolean indexing).
        value = torch.exp(-0.5 * (i / length) ** 2) * ((py >= 0) & (py < rh) & (px >= 0) & (px < rw))
        where = (bi[:, None].expand_as(py), py.clamp(0, rh - 1), px.clamp(0, rw - 1))
        needles.index_put_(where, value, accumulate=True)
    needles = _gaussian_blur(needles[:, None], 0.5 * f).clamp(0, 1.2)
    texture = 0.45 * cover + 0.5 * needles
    if (rh, rw) != (h, w):
        texture = F.interpolate(texture, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    mean, std = texture.mean((2, 3), keepdim=True), texture.std((2, 3), keepdim=True).clamp_min(1e-6)
    photos = torch.tensor(_FROST_PHOTOS, device=like.device, dtype=like.dtype)[..., None, None]
    photo = photos[(_rand(gen, b, like=like) * len(_FROST_PHOTOS)).long()]  # [B, 3 stats, 3 RGB, 1, 1]
    shift = photo[:, 1] * _randn(gen, b, 1, 1, 1, like=like)
    return (photo[:, 0] + shift + photo[:, 2] * (texture - mean) / std).clamp(0, 1)


def _frost(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """c0 * x + c1 * frost with the original constants. Approximation: the frost layer is the
    procedural ``_frost_texture`` with the photographs' colour and contrast statistics (the original
    crops one of the photographs, which are not shipped)."""
    b, _, h, w = x.shape
    return c[0] * x + c[1] * _frost_texture(b, h, w, c[2] * s, gen, x)


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
