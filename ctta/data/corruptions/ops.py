"""Shared helpers: random numbers, padding, separable filters, FFT correlation, resampling."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _rand(gen: torch.Generator, *shape: int, like: Tensor) -> Tensor:
    return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype)


def _randn(gen: torch.Generator, *shape: int, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)


def _pad_index(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source indices of a padded axis; works for pads longer than the axis (periodic reflection).

    ``replicate``: aaa|abcd|ddd (scipy 'nearest', ImageMagick edge pixels); ``reflect101``:
    dcb|abcd|cba (OpenCV's default border); ``symmetric``: cba|abcd|dcb (scipy 'reflect').
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    period = 2 * n if mode == "symmetric" else max(2 * n - 2, 1)
    i = i.remainder(period)
    return torch.where(i < n, i, period - i - (1 if mode == "symmetric" else 0))


def _pad(x: Tensor, rows: tuple[int, int], cols: tuple[int, int], mode: str) -> Tensor:
    """Pad the last two axes by (before, after) rows and columns. ``F.pad`` where it has the mode and
    the pads are shorter than the axes (3x faster on CPU), else one gather (index_select on a middle
    axis is an order of magnitude slower)."""
    h, w = x.shape[-2:]
    native = {"replicate": "replicate", "reflect101": "reflect"}.get(mode)
    if native and x.dim() == 4 and max(rows) < h and max(cols) < w:
        return F.pad(x, (*cols, *rows), mode=native)
    ri, ci = _pad_index(h, *rows, mode, x.device), _pad_index(w, *cols, mode, x.device)
    index = (ri[:, None] * w + ci[None, :]).reshape(-1)
    out = x.flatten(-2).gather(-1, index.expand(*x.shape[:-2], -1))
    return out.view(*x.shape[:-2], len(ri), len(ci))


def _filter_matrix(n: int, taps: Tensor, mode: str) -> Tensor:
    """Dense [n, n] matrix of a centred 1-D correlation with border ``mode`` (taps of odd length).

    Applying filters as ``M_h @ x @ M_w.T`` is much faster than depthwise convolution on CPU (BLAS)
    and handles any kernel length, including kernels wider than the image.
    """
    r = (taps.numel() - 1) // 2
    src = _pad_index(n, r, r, mode, taps.device)
    cols = src[torch.arange(n, device=taps.device)[:, None] + torch.arange(2 * r + 1, device=taps.device)]
    return torch.zeros(n, n, dtype=taps.dtype, device=taps.device).scatter_add_(1, cols, taps.expand(n, -1))


def _separable(x: Tensor, mh: Tensor, mw: Tensor) -> Tensor:
    return mh @ x @ mw.transpose(-1, -2)


def _filter2(x: Tensor, taps: Tensor, mode: str) -> Tensor:
    """The same centred 1-D correlation along both image axes."""
    return _separable(x, _filter_matrix(x.shape[-2], taps, mode), _filter_matrix(x.shape[-1], taps, mode))


def _gaussian_taps(sigma: float, radius: int, like: Tensor) -> Tensor:
    t = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(x: Tensor, sigma: float, mode: str = "replicate", truncate: float = 4.0) -> Tensor:
    """scipy.ndimage.gaussian_filter over the last two axes (skimage.filters.gaussian defaults)."""
    if sigma <= 0:
        return x
    return _filter2(x, _gaussian_taps(sigma, int(truncate * sigma + 0.5), x), mode)


def _box_blur3(x: Tensor) -> Tensor:
    """cv2.blur(x, (3, 3)): normalised 3x3 box with OpenCV's default border."""
    return _filter2(x, torch.full((3,), 1 / 3, device=x.device, dtype=x.dtype), "reflect101")


def _fast_len(n: int) -> int:
    """Smallest 7-smooth integer >= n (a fast FFT length for pocketfft and cuFFT)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _correlate_fft(x: Tensor, kernel: Tensor, mode: str, origin: tuple[int, int] | None = None) -> Tensor:
    """Correlate ``x [B, C, H, W]`` with ``kernel [1 or B, kh, kw]`` via FFT: out[i, j] = sum of
    kernel[u, v] * x[i + u - oy, j + v - ox], where (oy, ox) = ``origin`` (default: the centre).

    Per-image kernels cost the same as a shared one, which is what makes the motion blur batched.
    """
    kh, kw = kernel.shape[-2:]
    oy, ox = origin if origin is not None else (kh // 2, kw // 2)
    h, w = x.shape[-2:]
    xp = _pad(x, (oy, kh - 1 - oy), (ox, kw - 1 - ox), mode)
    size = (_fast_len(xp.shape[-2]), _fast_len(xp.shape[-1]))
    # Correlation is convolution with the flipped kernel; the valid part starts at kernel size - 1.
    spectrum = torch.fft.rfft2(xp, s=size) * torch.fft.rfft2(kernel.flip(-2, -1), s=size).unsqueeze(1)
    return torch.fft.irfft2(spectrum, s=size)[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w]


def _floor_u8(x: Tensor) -> Tensor:
    """numpy's ``uint8(v * 255) / 255`` (truncation) for v in [0, 1]; the 1e-3 guard keeps exact grey
    levels k/255 from dropping to k-1 through float32 rounding in blurred flat regions."""
    return torch.floor(x * 255 + 1e-3).div_(255)


def _zoom_matrix(n: int, zoom: float, like: Tensor) -> Tensor:
    """[n, n] matrix of the original ``clipped_zoom`` along one axis: centre crop of ceil(n / zoom)
    pixels, scipy.ndimage.zoom (order 1, which maps the corner pixel centres onto each other) to
    round(crop * zoom) pixels, centre trim back to n."""
    crop = math.ceil(n / zoom)
    top, size = (n - crop) // 2, round(crop * zoom)
    out = torch.arange(n, device=like.device, dtype=torch.float64) + (size - n) // 2
    src = top + out * ((crop - 1) / max(size - 1, 1))
    low = src.floor().clamp(max=n - 1)
    frac = src - low
    rows = torch.arange(n, device=like.device)
    m = torch.zeros(n, n, device=like.device, dtype=torch.float64)
    m.index_put_((rows, low.long()), 1 - frac, accumulate=True)
    m.index_put_((rows, (low.long() + 1).clamp(max=n - 1)), frac, accumulate=True)
    return m.to(like.dtype)


def _clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    """The original ``clipped_zoom``, per axis (so non-square images work too; the original assumes
    square ones). Exact port, except for one scipy artifact: when float rounding puts the last source
    coordinate a hair past the crop, scipy's default mode 'constant' zeroes that output row or column
    (e.g. 160 px at zoom 1.27); here it gets the edge pixel. Small images use one dense matrix per
    axis (fastest below ~128 px), larger ones ``interpolate`` (O(1), not O(n), multiply-adds a pixel).
    """
    h, w = x.shape[-2:]
    if max(h, w) <= 128:
        return _separable(x, _zoom_matrix(h, zoom, x), _zoom_matrix(w, zoom, x))
    crops, sizes, trims = [], [], []
    for n in (h, w):
        crop = math.ceil(n / zoom)
        crops.append(slice((n - crop) // 2, (n - crop) // 2 + crop))
        sizes.append(round(crop * zoom))
        trims.append((sizes[-1] - n) // 2)
    # scipy.ndimage.zoom (order 1) maps corner pixel centres onto each other: align_corners=True.
    y = F.interpolate(x[..., crops[0], crops[1]], size=sizes, mode="bilinear", align_corners=True)
    return y[..., trims[0] : trims[0] + h, trims[1] : trims[1] + w]


def _motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage(radius, sigma, angle), one angle (degrees) per image.

    ImageMagick averages ``2 * ceil(radius) + 1`` pixels at integer offsets
    ``round(i * (cos a, sin a))``, i = 0, 1, ..., weighted by a one-sided Gaussian exp(-i^2 / 2
    sigma^2), with edge pixels outside the image. The taps are scattered into a per-image kernel and
    applied by FFT. Not bit-exact to ImageMagick: no 16-bit quantum rounding and no 8-bit PNG round
    trip around the call.
    """
    width = 2 * math.ceil(radius) + 1
    i = torch.arange(width, device=x.device, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * max(sigma, 1e-12) ** 2))
    weights = weights / weights.sum()
    rad = torch.deg2rad(angles.to(torch.float64))[:, None]
    ox = torch.ceil(i * torch.cos(rad) - 0.5).long()  # ImageMagick rounds with ceil(v - 0.5)
    oy = torch.ceil(i * torch.sin(rad) - 0.5).long()
    # Kernel grid: the bounding box of every image's taps (a third smaller than a centred square).
    y0, x0 = int(oy.min()), int(ox.min())
    kh, kw = int(oy.max()) - y0 + 1, int(ox.max()) - x0 + 1
    flat = (oy - y0) * kw + (ox - x0)
    kernel = torch.zeros(len(angles), kh * kw, device=x.device, dtype=torch.float64)
    kernel.scatter_add_(1, flat, weights.expand_as(flat).contiguous())
    return _correlate_fft(x, kernel.view(-1, kh, kw).to(x.dtype), "replicate", origin=(-y0, -x0))


def _plasma_fractal(batch: int, size: int, decay: float, gen: torch.Generator, like: Tensor) -> Tensor:
    """The original diamond-square ``plasma_fractal``, vectorised over a batch: [B, n, n] in [0, 1]
    with n the next power of two >= size (cropped by the caller). Exact port, including the
    original's wibble * U(-wibble, wibble) noise amplitude.

    Instead of strided writes into the full map, each level keeps the compact grid of known points
    and interleaves it with the new square centres and diamond points (much faster on CPU).
    """
    n = 1 << max(size - 1, 1).bit_length()
    corners = torch.zeros(batch, 1, 1, device=like.device, dtype=like.dtype)
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * wibble * (2 * _rand(gen, *total.shape, like=like) - 1)

    while corners.shape[-1] < n:
        k = corners.shape[-1]
        squares = corners + corners.roll(-1, 1)
        centres = wibbled_mean(squares + squares.roll(-1, 2))  # cell centres
        top = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))  # edge midpoints
        left = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        rows = (torch.stack([corners, top], -1), torch.stack([left, centres], -1))
        corners = torch.stack(rows, 2).reshape(batch, 2 * k, 2 * k)
        wibble /= decay
    corners = corners - corners.amin((1, 2), keepdim=True)
    return corners / corners.amax((1, 2), keepdim=True)


def _hsv_adjust(
    x: Tensor, value: Callable[[Tensor], Tensor], saturation: Callable[[Tensor], Tensor]
) -> Tensor:
    """Change HSV value and saturation with hue fixed, in closed form (no hue computation).

    With hue fixed every channel is ``V * (1 - S * g)`` where g (0 for the max channel, 1 for the min
    channel) depends on hue only, so new RGB = V' (1 - S' g) with g = (V - x) / (V - min). Grey pixels
    have hue 0 (red) in skimage, hence g = (0, 1, 1) there: saturating grey turns it reddish, as in
    the original. Equal to skimage's rgb2hsv -> edit -> hsv2rgb up to float rounding.
    """
    v = x.amax(1, keepdim=True)
    delta = v - x.amin(1, keepdim=True)
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    grey = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    g = torch.where(delta > 0, (v - x) / delta.clamp_min(1e-12), grey)
    return value(v) * (1 - saturation(s) * g)
