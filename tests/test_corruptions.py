"""Tests for ctta.corruptions: contract, severity ordering, determinism, agreement with the formulas."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctta.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    HELD_OUT,
    blur,
    corrupt,
    digital,
    ops,
    params,
    weather,
)
from helpers import natural_images

ndimage = pytest.importorskip("scipy.ndimage")

# Corruptions that draw no random numbers.
DETERMINISTIC = {
    "defocus_blur",
    "zoom_blur",
    "gaussian_blur",
    "brightness",
    "contrast",
    "saturate",
    "pixelate",
    "jpeg_compression",
}


@pytest.fixture(scope="module")
def cifar() -> torch.Tensor:
    return natural_images(4, 32)


@pytest.fixture(scope="module")
def imagenet() -> torch.Tensor:
    return natural_images(2, 224, seed=1)


def psnr(y: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((y - x) ** 2).mean()))


def correlation(y: torch.Tensor, x: torch.Tensor) -> float:
    """Mean over images of the Pearson correlation between clean and corrupted pixels."""
    a, b = (t.flatten(1) - t.flatten(1).mean(1, keepdim=True) for t in (x, y))
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def non_rigid_displacement(name: str, severity: int, size: int, margin: int) -> float:
    """RMS (pixels) of the sampling displacement left after removing its best affine fit.

    The probe image holds its own (scaled) x and y coordinates, so the corrupted image tells where
    each pixel was sampled from (bilinear sampling of a linear ramp is exact away from the borders).
    """
    t = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    probe = torch.stack([0.1 + 0.8 * xx / (size - 1), 0.1 + 0.8 * yy / (size - 1), 0.5 + 0 * xx])
    out = corrupt(probe.expand(4, 3, size, size), name, severity, seed=5)
    where = (out[:, :2] - 0.1) / 0.8 * (size - 1)
    inner = (slice(None), slice(None), slice(margin, size - margin), slice(margin, size - margin))
    target = where[inner].flatten(2).transpose(1, 2)  # [B, N, 2]
    design = torch.stack([xx, yy, torch.ones_like(xx)], -1)[margin : size - margin, margin : size - margin]
    design = design.reshape(1, -1, 3).expand(target.shape[0], -1, -1)
    fit = design @ torch.linalg.lstsq(design, target).solution
    return float((target - fit).pow(2).sum(-1).mean().sqrt())


# ---------------------------------------------------------------------------------------------
# Contract


def test_names_and_order():
    assert CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
        "jpeg_compression",
    )  # fmt: skip
    assert HELD_OUT == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert ALL_CORRUPTIONS == CORRUPTIONS + HELD_OUT


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_shape_dtype_range_and_rank(name, cifar):
    for severity in (1, 5):
        out = corrupt(cifar, name, severity)
        assert out.shape == cifar.shape and out.dtype == cifar.dtype and out.device == cifar.device
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    single = corrupt(cifar[0], name, 3, seed=2)
    assert single.shape == cifar[0].shape
    double = corrupt(cifar[:2].double(), name, 3)
    assert double.dtype == torch.float64 and 0 <= double.min() and double.max() <= 1


@pytest.mark.parametrize("size", [16, 28, 64, 96, (40, 56)])
def test_other_sizes(size):
    x = natural_images(2, size)
    for name in ALL_CORRUPTIONS:
        out = corrupt(x, name, 4)
        assert out.shape == x.shape and torch.isfinite(out).all(), name
        assert 0 <= out.min() and out.max() <= 1, name


def test_half_precision_round_trips():
    x = natural_images(2, 32).half()
    for name in ("gaussian_noise", "motion_blur", "fog", "elastic_transform", "jpeg_compression"):
        out = corrupt(x, name, 3)
        assert out.dtype == torch.float16 and out.shape == x.shape


def test_bad_arguments_raise_with_the_choices(cifar):
    with pytest.raises(ValueError, match="unknown corruption 'blur'.*gaussian_noise.*saturate"):
        corrupt(cifar, "blur", 1)
    for severity in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"severity.*1\.\.5.*1, 2, 3, 4, 5"):
            corrupt(cifar, "contrast", severity)
    with pytest.raises(ValueError, match="unknown variant 'mnist'.*auto, cifar, imagenet"):
        corrupt(cifar, "contrast", 1, variant="mnist")
    for bad in (cifar[:, :1], cifar[0, 0], (cifar * 255).to(torch.uint8), cifar.numpy()):
        with pytest.raises(ValueError, match=r"\[B, 3, H, W\] or \[3, H, W\]"):
            corrupt(bad, "contrast", 1)


def test_variant_selection(cifar):
    """auto = cifar up to 64 px; the ImageNet constants are stronger, so the variants must differ."""
    x = natural_images(2, 64)
    assert torch.equal(corrupt(x, "contrast", 2), corrupt(x, "contrast", 2, variant="cifar"))
    assert not torch.equal(corrupt(x, "contrast", 2), corrupt(x, "contrast", 2, variant="imagenet"))
    big = natural_images(1, 96)
    assert torch.equal(
        corrupt(big, "gaussian_noise", 2), corrupt(big, "gaussian_noise", 2, variant="imagenet")
    )


# ---------------------------------------------------------------------------------------------
# Severity ordering
#
# Default: PSNR to the clean image strictly decreases from severity 1 to 5. Where the original
# constants do not give that, another metric or a subset of severity pairs is checked, and why:
# - fog: SSIM. ImageNet severities 3 and 4 have the same strength (2.5) and differ only in a rougher
#   fractal, which PSNR barely sees (a near tie) but SSIM does.
# - frost: correlation with the clean image. Frost is a*x + b*frost with a falling and b rising; from
#   severity 3 on, the shrinking image term offsets the growing frost term, so PSNR rises again, but
#   the correlation depends on b / a only, which strictly rises in both variants.
# - snow: PSNR on darkened images. Snow adds white; on bright images clipping at 1 hides the growth
#   (ImageNet 2 -> 3 trades more flakes for bigger, clipped ones: a near tie).
# - CIFAR motion blur 3 and 4 differ only in ImageMagick's radius (6 vs 8) at sigma 2, and taps past
#   6 px weigh < 1e-8: they are the same corruption, so only 3 -> 5 is checked across them.
# - CIFAR spatter 1-3 is water and 4-5 mud; saturate 1-2 desaturates and 3-5 oversaturates: each
#   branch is monotone, the switch between branches is not.
# - glass blur, elastic transform, pixelate: dedicated tests below.
METRICS = {"fog": "ssim", "frost": "correlation"}
PAIRS = {
    ("motion_blur", "cifar"): [(1, 2), (2, 3), (3, 5), (4, 5)],
    ("spatter", "cifar"): [(1, 2), (2, 3), (4, 5)],
    ("saturate", "cifar"): [(1, 2), (3, 4), (4, 5)],
    ("saturate", "imagenet"): [(1, 2), (3, 4), (4, 5)],
}
SEPARATE = ("glass_blur", "elastic_transform", "pixelate")


def ssim(y: torch.Tensor, x: torch.Tensor) -> float:
    """Mean SSIM (11x11 Gaussian window, sigma 1.5, per channel, valid region)."""
    t = torch.exp(-0.5 * ((torch.arange(11.0) - 5) / 1.5) ** 2)
    window = (t[:, None] * t[None, :] / t.sum() ** 2).expand(3, 1, 11, 11)

    def blur(v):
        return torch.nn.functional.conv2d(v, window, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float(((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


@pytest.mark.parametrize("name", [n for n in ALL_CORRUPTIONS if n not in SEPARATE])
@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_degradation_grows_with_severity(name, variant, cifar, imagenet):
    x = cifar if variant == "cifar" else imagenet
    x = 0.4 * x if name == "snow" else x
    metric = {"ssim": ssim, "correlation": correlation}.get(METRICS.get(name, ""), psnr)
    curve = [metric(corrupt(x, name, severity, seed=7), x) for severity in range(1, 6)]
    pairs = PAIRS.get((name, variant), [(s, s + 1) for s in range(1, 5)])
    assert all(curve[i - 1] > curve[j - 1] for i, j in pairs), curve


def test_glass_blur_spread_grows_with_severity():
    """Neither PSNR nor SSIM orders glass blur: the second blur heals the pixel jitter (CIFAR 1 -> 3
    only raise sigma, and PSNR rises), and severities trade shuffle distance for iterations. What
    grows strictly in both variants is the spread of the corruption's point-spread function: the
    variance of the two Gaussians plus the mean squared shuffle displacement, measured here."""
    g = torch.Generator().manual_seed(0)
    for variant, size in (("cifar", 32), ("imagenet", 96)):
        spread = []
        for sigma, d, iterations in params._PARAMS["glass_blur"][variant]:
            dy, dx = torch.randint(-d, d, (2, iterations, 4, size - 2 * d, size - 2 * d), generator=g)
            source = blur._glass_source_index(dy, dx, size, size, d)
            here = torch.arange(size * size)
            moved = (source // size - here // size) ** 2 + (source % size - here % size) ** 2
            spread.append(2 * sigma**2 + float(moved.double().mean()) / 2)
        assert all(a < b for a, b in zip(spread, spread[1:])), (variant, spread)
    x = natural_images(2, 32)
    assert all(psnr(corrupt(x, "glass_blur", s), x) < 30 for s in range(1, 6))


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_pixelate_resolution_falls_with_severity(variant, cifar, imagenet):
    """PSNR is not monotone for pixelate (CIFAR 27 px can alias worse than 24 px), but the effective
    resolution, the number of distinct pixel columns and rows, is int(size * c) and strictly falls."""
    x = cifar if variant == "cifar" else imagenet
    n = x.shape[-1]
    blocks = []
    for severity in range(1, 6):
        out = corrupt(x, "pixelate", severity)
        cols = int((out[..., 1:] != out[..., :-1]).flatten(0, 2).any(0).sum()) + 1
        rows = int((out[..., 1:, :] != out[..., :-1, :]).transpose(-1, -2).flatten(0, 2).any(0).sum()) + 1
        assert cols == rows == int(n * params._PARAMS["pixelate"][variant][severity - 1])
        blocks.append(cols)
    assert all(a > b for a, b in zip(blocks, blocks[1:])), blocks


def test_elastic_non_rigid_part_grows_with_severity():
    """Elastic severities trade a global affine jitter (falling with severity on CIFAR, 2.6 px to
    1 px) for a local displacement field (growing), so PSNR rises with severity. The non-rigid part
    of the displacement grows strictly on CIFAR (severity 1 is a pure affine warp). On ImageNet,
    severities 1-2 are large smooth warps (alpha 488 at sigma 171 and 19.5 px, affine jitter 24 and
    49 px) and 3-5 small ripples of growing amplitude (alpha 12, 17, 29 at sigma 2.4): the original
    constants are not monotone there, and only 3 < 4 < 5 is checked."""
    curve = [non_rigid_displacement("elastic_transform", s, 32, margin=4) for s in range(1, 6)]
    assert curve[0] < 1e-3 and all(a < b for a, b in zip(curve, curve[1:])), curve
    curve = [non_rigid_displacement("elastic_transform", s, 224, margin=24) for s in (3, 4, 5)]
    assert all(a < b for a, b in zip(curve, curve[1:])), curve


# ---------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_determinism_and_seeds(name, cifar):
    a = corrupt(cifar, name, 3, seed=11)
    assert torch.equal(a, corrupt(cifar, name, 3, seed=11))
    if name in DETERMINISTIC:
        return
    assert not torch.equal(a, corrupt(cifar, name, 3, seed=12))
    same = corrupt(cifar[:1].expand(3, -1, -1, -1), name, 3, seed=11)  # each image its own noise
    assert not torch.equal(same[0], same[1]) and not torch.equal(same[1], same[2])


def test_generator_is_private(cifar):
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    corrupt(cifar, "snow", 3)
    assert torch.equal(before, torch.rand(1))


# ---------------------------------------------------------------------------------------------
# Agreement with the original formulas


def flat(value: float, n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.full((n, 3, size, size), value)


def test_gaussian_noise_statistics():
    for variant, c in (("cifar", 0.08), ("imagenet", 0.18)):
        d = corrupt(flat(0.5), "gaussian_noise", 3, variant=variant) - 0.5
        assert abs(float(d.mean())) < 0.004 and float(d.std()) == pytest.approx(c, rel=0.02)


def test_speckle_noise_statistics():
    d = (corrupt(flat(0.4), "speckle_noise", 5) - 0.4) / 0.4
    assert abs(float(d.mean())) < 0.005 and float(d.std()) == pytest.approx(0.2, rel=0.02)


@pytest.mark.parametrize(
    ("variant", "severity", "c"), [("cifar", 5, 50), ("imagenet", 2, 25), ("imagenet", 5, 3)]
)
def test_shot_noise_is_poisson(variant, severity, c):
    """y = clip(Poisson(c x) / c, 0, 1): c y is an integer count with the moments of min(K, c)."""
    level = 0.3
    counts = corrupt(flat(level, n=16), "shot_noise", severity, variant=variant).double() * c
    assert torch.allclose(counts, counts.round(), atol=1e-4)
    lam = c * level
    pmf = np.array([math.exp(-lam) * lam**k / math.factorial(k) for k in range(c)])
    values = np.arange(c + 1)
    probs = np.append(pmf, 1 - pmf.sum())  # counts above c are clipped to c
    mean = (values * probs).sum()
    var = (values**2 * probs).sum() - mean**2
    assert float(counts.mean()) == pytest.approx(mean, rel=0.01)
    assert float(counts.var()) == pytest.approx(var, rel=0.04)


@pytest.mark.parametrize(("variant", "amount"), [("cifar", 0.07), ("imagenet", 0.27)])
def test_impulse_noise_fractions(variant, amount):
    x = flat(0.5, n=16)
    out = corrupt(x, "impulse_noise", 5, variant=variant)
    salt, pepper = float((out == 1).float().mean()), float((out == 0).float().mean())
    assert salt == pytest.approx(amount / 2, rel=0.05) and pepper == pytest.approx(amount / 2, rel=0.05)
    assert torch.equal(out[(out != 0) & (out != 1)], x[(out != 0) & (out != 1)])


def test_contrast_formula(cifar):
    x = cifar.double().numpy()
    for variant, c in (("cifar", 0.4), ("imagenet", 0.2)):
        mean = x.mean(axis=(2, 3), keepdims=True)
        expected = np.clip((x - mean) * c + mean, 0, 1)
        out = corrupt(cifar.double(), "contrast", 3, variant=variant).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-12)


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2hsv for [..., 3] arrays."""
    v = rgb.max(-1)
    delta = rgb.max(-1) - rgb.min(-1)
    s = np.where(delta == 0, 0, delta / np.where(v == 0, 1, v))
    safe = np.where(delta == 0, 1, delta)
    r, g, b = (rgb[..., i] for i in range(3))
    h = np.where(r == v, (g - b) / safe, np.where(g == v, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(delta == 0, 0, (h / 6) % 1)
    return np.stack([h, s, v], -1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage.color.hsv2rgb for [..., 3] arrays."""
    h, s, v = (hsv[..., i] for i in range(3))
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(i, [row[k] for row in table]) for k in range(3)], -1)


@pytest.mark.parametrize(("name", "edit"), [("brightness", "value"), ("saturate", "saturation")])
def test_hsv_corruptions_match_skimage_formulas(name, edit, cifar):
    x = torch.cat([cifar[:2], torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))])
    x[2, :, :4] = torch.tensor([0.0, 0.4, 1.0]).view(3, 1, 1)  # black, grey and white rows
    hsv = rgb2hsv(x.double().permute(0, 2, 3, 1).numpy())
    for variant in ("cifar", "imagenet"):
        for severity in range(1, 6):
            c = params._PARAMS[name][variant][severity - 1]
            edited = hsv.copy()
            if edit == "value":
                edited[..., 2] = np.clip(edited[..., 2] + c, 0, 1)
            else:
                edited[..., 1] = np.clip(edited[..., 1] * c[0] + c[1], 0, 1)
            expected = np.clip(hsv2rgb(edited), 0, 1).transpose(0, 3, 1, 2)
            out = corrupt(x.double(), name, severity, variant=variant).numpy()
            np.testing.assert_allclose(out, expected, atol=1e-9, err_msg=f"{variant} {severity}")


def pil_round_trip(x: torch.Tensor, transform) -> torch.Tensor:
    images = [Image.fromarray(img) for img in (x * 255).round().byte().permute(0, 2, 3, 1).numpy()]
    return (
        torch.stack([torch.from_numpy(np.array(transform(img))) for img in images]).permute(0, 3, 1, 2) / 255
    )


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_pixelate_matches_pillow(variant, cifar, imagenet):
    x = cifar if variant == "cifar" else imagenet
    n = x.shape[-1]
    for severity in range(1, 6):
        c = params._PARAMS["pixelate"][variant][severity - 1]

        def pixelate(img, c=c):
            return img.resize((int(n * c), int(n * c)), Image.BOX).resize((n, n), Image.BOX)

        expected = pil_round_trip(x, pixelate)
        out = corrupt(pil_round_trip(x, lambda img: img), "pixelate", severity)
        assert float((out - expected).abs().max()) <= 1.01 / 255  # Pillow rounds each pass to 8 bits


def photographs(step: int) -> list[torch.Tensor]:
    """The shipped frost photographs, every ``step``-th pixel from the third on (OpenCV's bilinear
    resize by exactly 1/5 samples pixels 5i + 2)."""
    folder = Path(weather.__file__).parent / "frost"
    out = []
    for name in ("frost1.png", "frost2.png", "frost4.jpg", "frost5.jpg"):
        photo = torch.from_numpy(np.asarray(Image.open(folder / name).convert("RGB")).copy()).permute(2, 0, 1)
        out.append(photo[:, (step - 1) // 2 :: step, (step - 1) // 2 :: step].double() / 255)
    return out


def source_photo(layer: torch.Tensor, photos: list[torch.Tensor]) -> int | None:
    """Index of the photograph that ``layer`` is a crop of, else None."""
    h, w = layer.shape[-2:]
    for index, photo in enumerate(photos):
        corners = photo[:, : photo.shape[1] - h + 1, : photo.shape[2] - w + 1]
        for top, left in ((corners - layer[:, :1, :1]).abs() < 1e-9).all(0).nonzero():
            if torch.allclose(photo[:, top : top + h, left : left + w], layer, atol=1e-6):
                return index
    return None


@pytest.mark.parametrize("variant, size, step, n", [("cifar", 32, 5, 40), ("imagenet", 224, 1, 6)])
def test_frost_pastes_crops_of_the_original_photographs(variant, size, step, n):
    """On a black image frost is c1 times a crop of one of the photographs: at full resolution for
    ImageNet, shrunk by 0.2 the way make_cifar_c.py's cv2.resize does for CIFAR; on CIFAR, 40
    images draw every photograph."""
    x = torch.zeros(n, 3, size, size, dtype=torch.float64)
    c = params._PARAMS["frost"][variant][4]
    photos = photographs(step)
    sources = [
        source_photo(layer, photos) for layer in corrupt(x, "frost", 5, seed=3, variant=variant) / c[1]
    ]
    assert None not in sources
    assert variant == "imagenet" or set(sources) == set(range(len(photos)))


def test_pixelate_on_non_square_images_matches_pillow_and_both_row_passes_agree():
    """Rows and columns use their own maps (37 x 53 px), and the CPU row pass (a segment sum over
    the runs of ``rows``) equals the BOX matrix product that other devices use."""
    x = pil_round_trip(natural_images(2, 64)[..., :37, :53].contiguous(), lambda img: img)
    for c in (0.9, 0.6, 0.33):

        def pixelate(img, c=c):
            return img.resize((int(53 * c), int(37 * c)), Image.BOX).resize((53, 37), Image.BOX)

        assert (
            float((digital._pixelate(x, c, 1.0, None) - pil_round_trip(x, pixelate)).abs().max())
            <= 1.01 / 255
        )
        for n in (37, 53, 224):
            down, rows, _ = digital._pixelate_maps(n, c, torch.float64, torch.device("cpu"))
            sums = torch.zeros(len(down), n, dtype=torch.float64).index_add_(
                0, rows, torch.eye(n, dtype=torch.float64)
            )
            torch.testing.assert_close(sums / down.count_nonzero(1)[:, None], down)


@pytest.mark.parametrize("codec", digital._JPEG_CODECS, ids=lambda f: f.__name__.strip("_"))
def test_jpeg_matches_pillow_with_every_codec(codec, cifar, imagenet, monkeypatch):
    try:
        round_trip = codec()
    except Exception as error:  # TorchCodec is optional; torchvision's codecs will be removed
        pytest.skip(f"{codec.__name__} unavailable: {error}")
    monkeypatch.setattr(digital, "_jpeg_codec", lambda: round_trip)
    for variant, x in (("cifar", cifar), ("imagenet", imagenet)):
        for severity in (1, 5):
            quality = params._PARAMS["jpeg_compression"][variant][severity - 1]

            def jpeg(img, quality=quality):
                buffer = io.BytesIO()
                img.save(buffer, "JPEG", quality=quality)
                return Image.open(buffer)

            out = corrupt(x, "jpeg_compression", severity, variant=variant)
            assert torch.equal(out, pil_round_trip(x, jpeg)), (variant, severity)


def test_gaussian_blur_matches_scipy(cifar):
    for variant, x in (("cifar", cifar), ("imagenet", natural_images(1, 96))):
        for severity in (1, 5):
            sigma = (
                params._PARAMS["gaussian_blur"][variant][severity - 1]
                * min(x.shape[-2:])
                / params._REFERENCE_SIZE[variant]
            )
            expected = ndimage.gaussian_filter(
                x.double().numpy(), (0, 0, sigma, sigma), mode="nearest", truncate=4
            )
            out = corrupt(x.double(), "gaussian_blur", severity, variant=variant).numpy()
            np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-10)


def disk_reference(radius: float, alias_blur: float) -> np.ndarray:
    """The original disk(): binary disk, then cv2.GaussianBlur (3x3 or 5x5, reflect-101 border)."""
    half, ksize = (8, 3) if radius <= 8 else (int(radius), 5)
    t = np.arange(-half, half + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return ndimage.correlate(disk, np.outer(taps, taps), mode="mirror")


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_defocus_blur_matches_filter2d(variant, cifar, imagenet):
    x = cifar if variant == "cifar" else imagenet[:1]
    for severity in (1, 4, 5):
        kernel = disk_reference(*params._PARAMS["defocus_blur"][variant][severity - 1])
        expected = ndimage.correlate(x.double().numpy(), kernel[None, None], mode="mirror")
        out = corrupt(x.double(), "defocus_blur", severity).numpy()
        np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-9)


def test_zoom_factors_are_numpy_arange():
    for variant in ("cifar", "imagenet"):
        for stop, step in params._PARAMS["zoom_blur"][variant]:
            assert blur._zoom_factors(stop, step) == np.arange(1, stop, step).tolist()


@pytest.mark.parametrize(("variant", "size"), [("cifar", 32), ("imagenet", 160)])  # matrix / interpolate
def test_zoom_blur_matches_scipy_zoom(variant, size):
    images = natural_images(1 if size > 32 else 3, size).double()
    x = images.permute(0, 2, 3, 1).numpy()  # the original works on H x W x 3

    def clipped_zoom(img, z):
        h = img.shape[0]
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        # mode="nearest" only differs from the original's default "constant" where float rounding
        # puts the last sample just past the crop edge: scipy then zeroes that row (not reproduced).
        img = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1, mode="nearest")
        trim = (img.shape[0] - h) // 2
        return img[trim : trim + h, trim : trim + h]

    for severity in (1, 5):
        factors = np.arange(1, *params._PARAMS["zoom_blur"][variant][severity - 1])
        expected = np.stack(
            [(img + sum(clipped_zoom(img, z) for z in factors)) / (len(factors) + 1) for img in x]
        )
        out = corrupt(images, "zoom_blur", severity).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-9)


def test_glass_shuffle_is_the_original_loop():
    """The parallel shuffle equals the original sequential loop, numpy-view "swap" included."""
    rng = np.random.default_rng(0)
    for h, w, d, iterations in ((12, 12, 1, 2), (14, 11, 2, 3), (16, 16, 4, 2)):
        offsets = rng.integers(-d, d, size=(iterations, 2, 2, h - 2 * d, w - 2 * d))
        images = rng.integers(0, 256, size=(2, h, w, 3)).astype(np.uint8)
        dy, dx = torch.from_numpy(offsets).unbind(2)
        source = blur._glass_source_index(dy, dx, h, w, d).numpy()
        assert np.array_equal(source, blur._glass_source_index(dy.float(), dx.float(), h, w, d).numpy())
        for b, x in enumerate(images):
            expected = x.copy()
            for i in range(iterations):
                for hh in range(h - d, d, -1):
                    for ww in range(w - d, d, -1):
                        dy, dx = offsets[i, b, :, hh - d - 1, ww - d - 1]
                        hp, wp = hh + dy, ww + dx
                        expected[hh, ww], expected[hp, wp] = expected[hp, wp], expected[hh, ww]
            np.testing.assert_array_equal(x.reshape(-1, 3)[source[b]].reshape(h, w, 3), expected)


def test_motion_blur_matches_imagemagick_kernel():
    """Shift-and-add of ImageMagick's MotionBlurImage taps with edge pixels, per image angle."""
    x = natural_images(3, 32).double()
    angles = torch.tensor([-45.0, 10.0, 37.5], dtype=torch.float64)
    radius, sigma = 6, 2
    out = ops._motion_blur(x, radius, sigma, angles).numpy()
    width = 2 * radius + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    for b, angle in enumerate(angles.tolist()):
        padded = np.pad(x[b].numpy(), ((0, 0), (width, width), (width, width)), mode="edge")
        expected = 0
        for i, weight in enumerate(weights):
            ox = math.ceil(i * math.cos(math.radians(angle)) - 0.5)
            oy = math.ceil(i * math.sin(math.radians(angle)) - 0.5)
            expected = (
                expected + weight * padded[:, width + oy : width + oy + 32, width + ox : width + ox + 32]
            )
        np.testing.assert_allclose(out[b], expected, atol=1e-10)


def test_plasma_fractal_is_the_original_diamond_square(monkeypatch):
    draws = []
    original = ops._rand

    def recording(gen, *shape, like):
        draws.append(original(gen, *shape, like=like))
        return draws[-1]

    monkeypatch.setattr(ops, "_rand", recording)
    out = ops._plasma_fractal(
        2, 32, 2.5, torch.Generator().manual_seed(1), torch.zeros(1, dtype=torch.float64)
    )
    draws = iter(d[1].numpy() for d in draws)
    m, step, wibble = np.zeros((32, 32)), 32, 100.0

    def wibbled_mean(a):
        return a / 4 + wibble * wibble * (2 * next(draws) - 1)

    while step >= 2:  # the original algorithm, written with numpy strided assignment
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
        wibble /= 2.5
    m -= m.min()
    np.testing.assert_allclose(out[1].numpy(), m / m.max(), atol=1e-12)


def test_fog_formula(cifar, monkeypatch):
    fractal = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    monkeypatch.setattr(weather, "_plasma_fractal", lambda *args: fractal)
    x = cifar.double()
    peak = x.amax((1, 2, 3), keepdim=True)
    expected = ((x + 0.75 * fractal[:, None]) * peak / (peak + 0.75)).clamp(0, 1)
    assert torch.allclose(corrupt(x, "fog", 3), expected, atol=1e-12)


def test_edge_distance_is_euclidean():
    edges = torch.rand(2, 40, 50, generator=torch.Generator().manual_seed(0)) < 0.01
    expected = np.stack([ndimage.distance_transform_edt(~e) for e in edges.numpy()])
    out = weather._edge_distance(edges, 20.0).numpy()
    np.testing.assert_allclose(out, np.minimum(expected, 20.0), atol=1e-5)


def test_equalize_hist_matches_opencv_algorithm():
    v = torch.randint(3, 40, (2, 1, 16, 16), generator=torch.Generator().manual_seed(0)).float()
    out = weather._equalize_hist(v)
    for img, res in zip(v.numpy().astype(int), out.numpy()):
        hist = np.bincount(img.ravel(), minlength=256)
        first = int(np.flatnonzero(hist)[0])
        lut = np.round(
            np.float32(255 / (img.size - hist[first])) * (np.cumsum(hist) - hist[first]).astype(np.float32)
        )
        np.testing.assert_array_equal(res, lut[img])
    assert torch.equal(weather._equalize_hist(torch.full((1, 1, 4, 4), 7.0)), torch.full((1, 1, 4, 4), 7.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_contract(cifar):
    x = cifar.cuda()
    for name in ALL_CORRUPTIONS:
        out = corrupt(x, name, 3)
        assert out.device == x.device and out.shape == x.shape and 0 <= out.min() and out.max() <= 1, name
        assert torch.equal(out, corrupt(x, name, 3)), name
        if name in DETERMINISTIC - {"jpeg_compression"}:
            assert torch.allclose(out.cpu(), corrupt(cifar, name, 3), atol=1e-5), name
