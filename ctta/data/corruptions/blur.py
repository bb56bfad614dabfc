"""Blur corruptions: gaussian, glass, defocus, motion, zoom."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .ops import (
    _clipped_zoom,
    _correlate_fft,
    _filter_matrix,
    _floor_u8,
    _gaussian_blur,
    _gaussian_taps,
    _motion_blur,
    _rand,
)


def _gaussian_blur_corruption(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """skimage gaussian, sigma c * s, edge-replicated borders, truncate 4. Exact."""
    return _gaussian_blur(x, c * s)


def _glass_source_index(dy: Tensor, dx: Tensor, height: int, width: int, d: int) -> Tensor:
    """Flat source index of every output pixel after the original glass-blur shuffle loops.

    ``dy, dx [iterations, B, height - 2d, width - 2d]`` hold the offsets in [-d, d - 1] for the
    visited pixels (rows and columns d + 1 .. size - d). The original loop visits them in reverse
    raster order and runs ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy *views*, which is not
    a swap but the copy ``x[h, w] = x[h', w']`` (the second assignment writes x[h', w'] back onto
    itself). So a visited pixel ends with the final value of (h', w') if that pixel was visited
    earlier (it lies below, or to the right on the same row, and is itself visited), otherwise with
    the value (h', w') had when the pass began. These chains are resolved by pointer doubling, which
    reproduces the sequential loop exactly in O(log chain length) parallel steps.
    """
    batch = dy.shape[1]
    device = dy.device
    inner = (slice(None), slice(d + 1, height - d + 1), slice(d + 1, width - d + 1))  # visited pixels
    # Offset arithmetic in dy's dtype (float32 is exact for these integers and cheaper than int64).
    py = torch.arange(height, device=device, dtype=dy.dtype)[inner[1], None]
    px = torch.arange(width, device=device, dtype=dy.dtype)[inner[2]]
    identity = torch.arange(height * width, device=device).expand(batch, -1)
    source = identity
    for step_y, step_x in zip(dy, dx):
        qy, qx = py + step_y, px + step_x
        q = (qy * width + qx).long()
        later_row = (step_y > 0) | ((step_y == 0) & (step_x > 0))
        earlier = later_row & (qy <= height - d) & (qx >= d + 1) & (qx <= width - d)
        pointer = identity.clone()
        pointer.view(batch, height, width)[inner] = torch.where(
            earlier, q, (py * width + px).long().expand_as(q)
        )
        value = source.clone()
        value.view(batch, height, width)[inner] = source.gather(1, q.flatten(1)).view_as(q)
        while True:  # pointer doubling to the chain ends (pixels whose value is read, not copied)
            jumped = pointer.gather(1, pointer)
            if torch.equal(jumped, pointer):
                break
            pointer = jumped
        source = value.gather(1, pointer)
    return source


def _glass_blur(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Gaussian blur, 8-bit truncation, local pixel shuffle, Gaussian blur. Exact port.

    The shuffle is the original sequential loop (see ``_glass_source_index``), computed in parallel;
    only the random stream differs. Sizes other than the reference scale sigma and the shuffle
    distance (rounded, at least 1).
    """
    sigma, d, iterations = c[0] * s, max(1, round(c[1] * s)), c[2]
    b, ch, h, w = x.shape
    x = _floor_u8(_gaussian_blur(x, sigma))
    # (dy, dx) uniform on [-d, d - 1]^2 from one float per pixel, kept as floats (exact for these small
    # integers): several times cheaper than two randint draws and integer division.
    u = _rand(gen, iterations, b, h - 2 * d, w - 2 * d, like=x).mul_(2 * d)
    dy = u.floor()
    dx = u.sub_(dy).mul_(2 * d).floor_().sub_(d)
    source = _glass_source_index(dy.sub_(d), dx, h, w, d)
    x = x.flatten(2).gather(2, source[:, None].expand(-1, ch, -1)).view(b, ch, h, w)
    return _gaussian_blur(x, sigma)


@functools.lru_cache(maxsize=32)
def _disk_kernel(radius: float, alias_sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The original ``disk``: a normalised binary disk on a grid of half-size max(8, radius),
    smoothed by cv2.GaussianBlur (3x3, or 5x5 for radius > 8, OpenCV border), then cropped to its
    non-zero support (exact, the cropped taps are zero). Cached: CPU chunks reuse it."""
    like = torch.empty(0, dtype=dtype, device=device)
    half = 8 if radius <= 8 else math.ceil(radius)
    t = torch.arange(-half, half + 1, device=device, dtype=dtype)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).to(dtype)
    ksize = 3 if radius <= 8 else 5
    taps = _gaussian_taps(max(alias_sigma, 1e-6), ksize // 2, like)
    m = _filter_matrix(2 * half + 1, taps, "reflect101")
    kernel = m @ (disk / disk.sum()) @ m.T
    support = int((kernel.abs().sum(0) > 0).nonzero().max()) - half
    return kernel[half - support : half + support + 1, half - support : half + support + 1]


def _defocus_blur(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Correlation with an anti-aliased disk (cv2.filter2D, OpenCV border). Exact port; for scaled
    sizes the radius and anti-alias sigma are scaled and the grid half-size is ceil(radius)."""
    return _correlate_fft(x, _disk_kernel(c[0] * s, c[1] * s, x.dtype, x.device)[None], "reflect101")


def _motion_blur_corruption(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """ImageMagick motion blur with a uniform angle in [-45, 45] degrees per image. Close
    re-implementation of ImageMagick's kernel (see ``_motion_blur``), not the ImageMagick binary."""
    angles = _rand(gen, x.shape[0], like=x) * 90 - 45
    return _motion_blur(x, c[0] * s, c[1] * s, angles)


def _zoom_factors(stop: float, step: float) -> list[float]:
    """np.arange(1, stop, step) bit for bit (numpy fills start + i * ((start + step) - start))."""
    delta = (1 + step) - 1
    return [1 + i * delta for i in range(math.ceil((stop - 1) / step))]


def _zoom_blur(x: Tensor, c: tuple, s: float, gen: torch.Generator) -> Tensor:
    """Mean of the image and its centre zooms by each factor (the first factor is 1). Exact port;
    zoom factors are relative, so they are not scaled with the image size."""
    factors = _zoom_factors(*c)
    out = x.clone()
    for zoom in factors:
        out += _clipped_zoom(x, zoom)
    return out / (len(factors) + 1)
