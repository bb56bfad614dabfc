"""Batched ``ctta.corruptions`` against a per-image numpy/scipy/Pillow loop of the same formulas.

    python benchmarks/corruptions.py [--quick] [--threads N]

For 32 px (batch 256) and 224 px (batch 32) images, times the 15 standard corruptions at severity 3:
``corrupt`` on the whole batch (median of three runs after a warm-up) against the reference below,
one image at a time the way the original ``make_*_c.py`` scripts work (float64 numpy, scipy.ndimage
for skimage/OpenCV filters, Pillow for resizing and JPEG, Python loops where the original has them).
Each reference image is timed on its own, over the batch or until about 2 s have passed (at least 3
images), and the median is kept: the original glass blur takes about a second per 224 px image.
Medians keep the numbers usable on a shared machine; the load average is printed for context.

Prints ms per image for both, the speed-up per corruption, the overall speed-up (total reference
time over total batched time per image, all 15 corruptions) per size and for both sizes together,
and glass blur's.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ctta.data.corruptions import CORRUPTIONS, corrupt
from ctta.data.corruptions.params import _PARAMS

SEVERITY = 3
Reference = Callable[[np.ndarray, tuple, np.random.RandomState], np.ndarray]


def natural_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Colour gradients, a disc, a box and stripes: enough structure for every corruption."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    p = torch.rand(n, 8, 1, 1, generator=g)
    img = torch.stack([0.2 + 0.6 * xx * p[:, 0], 0.3 + 0.4 * yy * p[:, 1], 0.7 - 0.4 * xx * yy * p[:, 2]], 1)
    disc = ((xx - p[:, 3]) ** 2 + (yy - p[:, 4]) ** 2 < 0.05)[:, None]
    img = torch.where(disc, p[:, 5:8], img)
    stripes = torch.sin(2 * math.pi * size / 10 * (xx + yy * p[:, 3]))[:, None]
    return (img + 0.1 * stripes * (yy > 0.6)).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# Reference: one H x W x 3 float64 image at a time, as in the original scripts.


def gaussian_filter(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian(multichannel=True): filter the two spatial axes only."""
    return ndimage.gaussian_filter(x, (sigma, sigma, 0)[: x.ndim], mode=mode, truncate=truncate)


def plasma_fractal(mapsize: int, decay: float, rng: np.random.RandomState) -> np.ndarray:
    """The original diamond-square, with its strided numpy assignments."""
    m = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled_mean(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[::step, ::step]
        squares = corners + np.roll(corners, -1, 0)
        m[half::step, half::step] = wibbled_mean(squares + np.roll(squares, -1, 1))
        centres, corners = m[half::step, half::step], m[::step, ::step]
        m[::step, half::step] = wibbled_mean(
            centres + np.roll(centres, 1, 0) + corners + np.roll(corners, -1, 1)
        )
        m[half::step, ::step] = wibbled_mean(
            centres + np.roll(centres, 1, 1) + corners + np.roll(corners, -1, 0)
        )
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top : top + ch, top : top + ch], (zoom, zoom, 1)[: img.ndim], order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


def motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion-blur taps, shift and add with edge pixels."""
    width = 2 * math.ceil(radius) + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    h, w = x.shape[:2]
    pad = ((width, width), (width, width)) + ((0, 0),) * (x.ndim - 2)
    padded = np.pad(x, pad, mode="edge")
    out = np.zeros_like(x)
    for i, weight in enumerate(weights):
        ox = math.ceil(i * math.cos(math.radians(angle)) - 0.5)
        oy = math.ceil(i * math.sin(math.radians(angle)) - 0.5)
        out += weight * padded[width + oy : width + oy + h, width + ox : width + ox + w]
    return out


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    s = np.where(delta == 0, 0, delta / np.where(v == 0, 1, v))
    safe = np.where(delta == 0, 1, delta)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(r == v, (g - b) / safe, np.where(g == v, 2 + (b - r) / safe, 4 + (r - g) / safe))
    return np.stack([np.where(delta == 0, 0, (h / 6) % 1), s, v], -1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(i, [row[k] for row in table]) for k in range(3)], -1)


def to_pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.uint8(np.round(x * 255)))


def ref_gaussian_noise(x, c, rng):
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def ref_shot_noise(x, c, rng):
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def ref_impulse_noise(x, c, rng):
    flipped = rng.random_sample(x.shape) < c
    salted = rng.random_sample(x.shape) < 0.5
    out = x.copy()
    out[flipped & salted] = 1
    out[flipped & ~salted] = 0
    return out


def ref_defocus_blur(x, c, rng):
    radius, alias = c
    half, ksize = (8, 3) if radius <= 8 else (int(radius), 5)
    t = np.arange(-half, half + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(np.float64)
    taps = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias**2))
    kernel = ndimage.correlate(disk / disk.sum(), np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    channels = [ndimage.correlate(x[:, :, d], kernel, mode="mirror") for d in range(3)]  # cv2.filter2D
    return np.clip(np.stack(channels, -1), 0, 1)


def ref_glass_blur(x, c, rng):
    sigma, delta, iterations = c
    h, w = x.shape[:2]
    x = np.uint8(gaussian_filter(x, sigma) * 255)
    for _ in range(iterations):  # the original loop, numpy-view "swap" included
        for hh in range(h - delta, delta, -1):
            for ww in range(w - delta, delta, -1):
                dx, dy = rng.randint(-delta, delta, size=(2,))
                hp, wp = hh + dy, ww + dx
                x[hh, ww], x[hp, wp] = x[hp, wp], x[hh, ww]
    return np.clip(gaussian_filter(x / 255.0, sigma), 0, 1)


def ref_motion_blur(x, c, rng):
    return np.clip(motion_blur(x, c[0], c[1], rng.uniform(-45, 45)), 0, 1)


def ref_zoom_blur(x, c, rng):
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    factors = np.arange(1, *c)
    for zoom in factors:
        out += clipped_zoom(x, zoom)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


def ref_snow(x, c, rng):
    h = x.shape[0]
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = np.uint8(np.clip(layer, 0, 1) * 255) / 255.0
    layer = motion_blur(layer, c[4], c[5], rng.uniform(-135, -45))[..., None]
    grey = (x @ np.array([0.299, 0.587, 0.114])).reshape(h, h, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1)


def ref_frost(x, c, rng):
    """The same procedural texture as ``ctta.corruptions._frost_texture``, one image at a time."""
    h = x.shape[0]
    q = min(1 / c[2], 2.0)
    f, r = c[2] * q, round(h * q)
    cover = plasma_fractal(1 << max(r - 1, 1).bit_length(), 1.8, rng)[:r, :r]
    t = rng.random_sample((r, r)) * (4 * f * f / 0.12) / np.maximum(cover**2, 1e-6)
    kind = np.searchsorted([1, 1.5, 1.75, 1.875], t, side="right")
    needles = np.zeros((r, r))
    for k in range(4):
        length = 4 * f * 2**k
        angle = np.deg2rad(rng.uniform(0, 360))
        i = np.arange(math.floor(2 * length) + 1)
        y, x0 = np.nonzero(kind == k)
        py = y[:, None] + np.round(i * np.sin(angle)).astype(int)
        px = x0[:, None] + np.round(i * np.cos(angle)).astype(int)
        keep = (py >= 0) & (py < r) & (px >= 0) & (px < r)
        np.add.at(
            needles, (py[keep], px[keep]), np.broadcast_to(np.exp(-0.5 * (i / length) ** 2), keep.shape)[keep]
        )
    needles = np.clip(gaussian_filter(needles, 0.5 * f), 0, 1.2)
    texture = np.clip(0.2 + 0.45 * cover + 0.5 * needles, 0, 1)
    if r != h:
        texture = np.asarray(Image.fromarray(texture.astype(np.float32)).resize((h, h), Image.BILINEAR))
    return np.clip(c[0] * x + c[1] * texture[..., None] * np.array([0.86, 0.93, 1.0]), 0, 1)


def ref_fog(x, c, rng):
    h = x.shape[0]
    peak = x.max()
    x = x + c[0] * plasma_fractal(1 << max(h - 1, 1).bit_length(), c[1], rng)[:h, :h][..., None]
    return np.clip(x * peak / (peak + c[0]), 0, 1)


def ref_brightness(x, c, rng):
    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def ref_contrast(x, c, rng):
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def ref_elastic_transform(x, c, rng):
    alpha, sigma, jitter = c
    h = x.shape[0]
    centre, square = h // 2, h // 3
    src = np.float64([[centre + square] * 2, [centre + square, centre - square], [centre - square] * 2])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape)
    inv = np.linalg.solve(np.c_[dst, np.ones(3)], src)  # (x, y, 1) @ inv = source (x, y), as warpAffine
    matrix = np.array([[inv[1, 1], inv[0, 1]], [inv[1, 0], inv[0, 0]]])  # scipy wants (row, col) order
    offset = inv[2, ::-1]
    x = np.stack(
        [ndimage.affine_transform(x[..., d], matrix, offset, order=1, mode="mirror") for d in range(3)], -1
    )
    dx = gaussian_filter(rng.uniform(-1, 1, size=(h, h)), sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian_filter(rng.uniform(-1, 1, size=(h, h)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
    coords = [(yy + dy).ravel(), (xx + dx).ravel()]
    out = [ndimage.map_coordinates(x[..., d], coords, order=1, mode="reflect") for d in range(3)]
    return np.clip(np.stack(out, -1).reshape(x.shape), 0, 1)


def ref_pixelate(x, c, rng):
    h = x.shape[0]
    img = to_pil(x).resize((int(h * c), int(h * c)), Image.BOX).resize((h, h), Image.BOX)
    return np.asarray(img) / 255.0


def ref_jpeg_compression(x, c, rng):
    buffer = io.BytesIO()
    to_pil(x).save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer)) / 255.0


REFERENCES: dict[str, Reference] = {name: globals()[f"ref_{name}"] for name in CORRUPTIONS}


# ----------------------------------------------------------------------------------------------


def time_batched(x: torch.Tensor, name: str, repeats: int) -> float:
    """Seconds per image: median of ``repeats`` runs on the whole batch, after a warm-up."""
    corrupt(x[:2], name, SEVERITY)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        corrupt(x, name, SEVERITY, seed=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(x)


def time_reference(images: np.ndarray, name: str, params: tuple, budget: float) -> float:
    """Seconds per image: median over the images processed before ``budget`` seconds ran out (at
    least 3), each timed on its own after a warm-up."""
    rng = np.random.RandomState(0)
    REFERENCES[name](images[0], params, rng)
    times: list[float] = []
    for img in images:
        start = time.perf_counter()
        REFERENCES[name](img, params, rng)
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and sum(times) > budget:
            break
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and a short reference budget")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default: torch's own; 1 is steadier on a busy machine)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setups = [(32, "cifar", 64 if args.quick else 256), (224, "imagenet", 8 if args.quick else 32)]
    budget, repeats = (0.5, 1) if args.quick else (2.0, 3)

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, severity {SEVERITY}")
    print(
        f"load average {load:.1f} on {cores} cores"
        + (" -- busy machine, timings are noisy" if load > cores else "")
    )
    totals = {"batched": 0.0, "reference": 0.0}
    for size, variant, batch in setups:
        x = natural_images(batch, size)
        images = x.double().permute(0, 2, 3, 1).numpy()
        print(f"\n{size} x {size}, batch {batch} ({variant} constants)")
        print(f"{'corruption':20s} {'batched ms/img':>15s} {'reference ms/img':>17s} {'speed-up':>9s}")
        sums = {"batched": 0.0, "reference": 0.0}
        glass = 0.0
        for name in CORRUPTIONS:
            ours = time_batched(x, name, repeats)
            ref = time_reference(images, name, _PARAMS[name][variant][SEVERITY - 1], budget)
            sums["batched"] += ours
            sums["reference"] += ref
            glass = ref / ours if name == "glass_blur" else glass
            print(f"{name:20s} {ours * 1e3:15.3f} {ref * 1e3:17.3f} {ref / ours:8.1f}x")
        ratio = sums["reference"] / sums["batched"]
        print(f"{'all 15':20s} {sums['batched'] * 1e3:15.3f} {sums['reference'] * 1e3:17.3f} {ratio:8.1f}x")
        print(f"overall speed-up at {size} px: {ratio:.1f}x; glass blur: {glass:.1f}x")
        for key in totals:
            totals[key] += sums[key]
    print(f"\noverall speed-up, both sizes: {totals['reference'] / totals['batched']:.1f}x")


if __name__ == "__main__":
    main()
