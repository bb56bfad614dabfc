"""ctta's corruptions against the ``imagecorruptions`` package (a dev dependency) on a few tiny images.

The full comparison on real photographs is ``benchmarks/corruption_parity.py``. Here: corruptions
without randomness must agree pixel for pixel (up to the package's 8-bit truncation), random ones
in the distribution of the per-image PSNR to the clean image.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ctta.data.corruptions import corrupt
from helpers import natural_images

_COMPAT = Path(__file__).resolve().parents[1] / "benchmarks" / "imagecorruptions_compat.py"


@pytest.fixture(scope="module")
def package():
    spec = importlib.util.spec_from_file_location("imagecorruptions_compat", _COMPAT)
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    try:
        return compat.load()
    except ImportError as error:  # `make venv` installs it: a missing package is a broken setup
        pytest.fail(f"{error} (make venv installs imagecorruptions==1.1.2 with --no-deps)")


def images(n: int, size: int, seed: int) -> torch.Tensor:
    """Test images on the 8-bit grid, so that the package gets exactly the image ctta corrupts."""
    return (natural_images(n, size, seed=seed) * 255).round() / 255


def both(package, x: torch.Tensor, name: str, severity: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ctta's output x 255 as float, the package's uint8 output as float), HWC."""
    ours = (
        corrupt(x, name, severity, seed=seed, variant="imagenet").permute(0, 2, 3, 1).double().numpy() * 255
    )
    np.random.seed(seed)
    images = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()
    theirs = np.stack([package.corrupt(img, severity, name) for img in images]).astype(np.float64)
    return ours, theirs


def psnr(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(255**2 / ((y - x) ** 2).mean((1, 2, 3)))


# (corruption, severities, image size). Sizes other than 224 only where no constant is in pixels.
DETERMINISTIC = [
    ("contrast", (1, 5), 64),
    ("brightness", (1, 5), 64),
    ("pixelate", (1, 3, 5), 64),
    ("jpeg_compression", (1, 5), 64),
    ("zoom_blur", (1, 5), 224),
    ("defocus_blur", (1, 5), 224),
]


@pytest.mark.parametrize("name, severities, size", DETERMINISTIC, ids=[d[0] for d in DETERMINISTIC])
def test_deterministic_corruptions_match_the_package(package, name, severities, size):
    """The package truncates its float result to uint8: ours x 255 lies in [theirs, theirs + 1), with
    1e-3 for float32. Pixelate and JPEG stay in uint8 there: Pillow's fixed-point BOX downscale is
    within one level of ours, and the JPEG round trips are the same bytes."""
    x = images(2, size, seed=3)
    for severity in severities:
        ours, theirs = both(package, x, name, severity)
        if name == "jpeg_compression":  # the same libjpeg-turbo round trip of the same bytes
            np.testing.assert_array_equal(ours.round(), theirs)
            continue
        low, high = (-1.0, 1.0) if name == "pixelate" else (0.0, 1.0)
        gap = ours - theirs
        assert gap.min() >= low - 1e-3 and gap.max() < high + 1e-3, (name, severity, gap.min(), gap.max())


# (corruption, severity, image size, number of images, tolerance on the mean PSNR in dB)
RANDOM = [
    ("gaussian_noise", 3, 64, 4, 0.1),
    ("shot_noise", 1, 64, 4, 0.1),
    ("impulse_noise", 5, 64, 4, 0.15),
    ("fog", 3, 64, 16, 1.0),
    ("frost", 5, 224, 16, 1.5),
]


@pytest.mark.parametrize("name, severity, size, n, tolerance", RANDOM, ids=[r[0] for r in RANDOM])
def test_random_corruptions_match_the_package_in_distribution(package, name, severity, size, n, tolerance):
    """Mean PSNR over images within ``tolerance`` dB. Noise PSNR hardly varies between draws (0.03 dB
    at 64 px); fog's fractal and frost's crop of a photograph (the same photographs; the package
    also enlarges them by 1.1, the original does not) vary by 1-2 dB per image, hence the wider
    tolerances."""
    x = images(n, size, seed=5)
    clean = x.permute(0, 2, 3, 1).double().numpy() * 255
    ours, theirs = both(package, x, name, severity, seed=1)
    gap = psnr(ours, clean).mean() - psnr(theirs, clean).mean()
    assert abs(gap) <= tolerance, (name, gap)
