"""Digital corruptions: brightness, saturate, contrast, elastic transform, pixelate, JPEG."""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .ops import _gaussian_blur, _hsv_adjust, _rand


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


def _pil_box_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[n_out, n_in] weights of Pillow's BOX resampling (ImagingResample's precompute_coeffs)."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    centre = (torch.arange(n_out, device=device, dtype=torch.float64)[:, None] + 0.5) * scale
    j = torch.arange(n_in, device=device, dtype=torch.float64)[None, :]
    lo, hi = torch.floor(centre - support + 0.5), torch.floor(centre + support + 0.5)
    u = (j - centre + 0.5) / max(scale, 1.0)
    weights = ((u > -0.5) & (u <= 0.5) & (j >= lo) & (j < hi)).to(torch.float64)
    return (weights / weights.sum(1, keepdim=True).clamp_min(1)).to(dtype)


@functools.lru_cache(maxsize=64)
def _pixelate_maps(
    n: int, c: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Along one axis of n pixels: the [int(n c), n] BOX downscale matrix, the small pixel each
    input pixel falls in (its weights are 0 or 1 over runs that partition the axis), and for each
    output pixel the one small pixel that the BOX upscale copies (an upscaling box of support 0.5
    covers exactly one source pixel: Pillow's BOX and NEAREST agree there). Cached: CPU chunks
    reuse them."""
    m = int(n * c)
    down = _pil_box_matrix(n, m, dtype, device)
    return down, down.argmax(0), _pil_box_matrix(m, n, dtype, device).argmax(1)


def _pixelate(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """Pillow BOX resize to int(size * c) and back. Exact linear port (Pillow additionally rounds
    to 8 bits after each pass): down along the rows, then the columns; up by gathers. On CPU the
    row pass is a segment sum (``index_add_``, 2x faster overall than the matrix product, which
    costs int(n c) multiply-adds per pixel); elsewhere it stays a matrix product, deterministic
    where ``index_add_``'s atomics are not. Along the last axis the gather is ``gather`` with an
    expanded index: ``index_select`` there is 6x slower on CPU."""
    (down_h, rows, up_h), (down_w, _, up_w) = (_pixelate_maps(n, c, x.dtype, x.device) for n in x.shape[-2:])
    if x.device.type == "cpu":
        small = x.new_zeros(*x.shape[:-2], len(down_h), x.shape[-1]).index_add_(-2, rows, x)
        small = small.div_(down_h.count_nonzero(1)[:, None].to(x.dtype))
    else:
        small = down_h @ x
    small = (small @ down_w.T).index_select(-2, up_h)
    return small.gather(-1, up_w.expand(*small.shape[:-1], len(up_w)))


def _jpeg_compression(x: Tensor, c: int, s: float, gen: torch.Generator) -> Tensor:
    """Real JPEG round trip at quality c of the 8-bit rounded image, through libjpeg-turbo on CPU
    (``_jpeg_codec``). Matches Pillow's ``save(quality=c)`` + decode bit for bit."""
    b, _, h, w = x.shape
    # Quantise straight into HWC bytes (one pass): every codec below reads CHW views of HWC memory
    # without a copy.
    hwc = torch.empty(b, h, w, 3, dtype=torch.uint8)
    hwc.permute(0, 3, 1, 2).copy_(x.mul(255).round_())
    out = torch.empty(b, 3, h, w, dtype=torch.uint8)
    for image, target in zip(hwc, out):
        target.copy_(_jpeg_codec()(image.permute(2, 0, 1), c))
    return out.to(x.device, x.dtype).div_(255)


def _torchcodec_jpeg() -> Callable[[Tensor, int], Tensor]:
    from torchcodec.decoders import decode_jpeg
    from torchcodec.encoders import JpegEncoder

    return lambda image, quality: decode_jpeg(JpegEncoder(image).to_tensor(quality=quality))


def _torchvision_jpeg() -> Callable[[Tensor, int], Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice: ``_jpeg_codec`` is the migration
        from torchvision.io import decode_jpeg, encode_jpeg

    def codec(image: Tensor, quality: int) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return decode_jpeg(encode_jpeg(image, quality=quality))

    return codec


def _pillow_jpeg() -> Callable[[Tensor, int], Tensor]:
    def codec(image: Tensor, quality: int) -> Tensor:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
        return torch.from_numpy(np.asarray(Image.open(buffer))).permute(2, 0, 1)

    return codec


_JPEG_CODECS = (_torchcodec_jpeg, _torchvision_jpeg, _pillow_jpeg)


@functools.cache
def _jpeg_codec() -> Callable[[Tensor, int], Tensor]:
    """JPEG round trip of one CHW uint8 CPU image, the first of ``_JPEG_CODECS`` that loads:
    TorchCodec when installed (the successor of torchvision's image codecs), else torchvision.io
    while it has them (deprecated since 0.29), else Pillow (about 5x slower at 32 px, a fixed cost
    per call). All three run libjpeg-turbo with Pillow's settings: identical bytes out."""
    for factory in _JPEG_CODECS[:-1]:
        try:
            return factory()
        except Exception:  # absent, or built for another torch (its native library fails to load)
            continue
    return _pillow_jpeg()
