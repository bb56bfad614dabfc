"""Batched ``ctta`` corruptions against the ``imagecorruptions`` package, per image, same process.

    python benchmarks/corruptions.py [--quick] [--batch 64] [--repeats 5] [--data DIR]

For 32 px and 224 px images, times the 15 corruptions at severity 3: ``corrupt`` on a batch
(``--batch``, default 64; ``variant="cifar"`` at 32 px, ``"imagenet"`` at 224 px) against the
package one image at a time, the way users call it (uint8 HWC in and out; at 32 px its functions
run with the CIFAR constants, ``imagecorruptions_compat.cifar_functions``, so both do the same
work; elastic transform keeps the package's own recipe). One thread everywhere: torch, OpenMP,
MKL/OpenBLAS and OpenCV. Each repeat times the ctta batch and then the package on successive
images until about ``--budget`` seconds have passed (at least 2 images; its glass blur takes over a
second per 224 px image); the table gives the median over repeats and the spread (min-max).

Images: real CIFAR-10 test images (upsampled to 224 px with Pillow's bicubic filter) when
``cifar10_test_first1000_lossless.npz`` is in ``--data``, else synthetic ones (JPEG and the
package's content-dependent steps run at other speeds on them). Prints ms per image for both and
the ratio ctta / package (target: at most 0.05), with the load average before and after.

The last column is a floor: one copy of the float batch (``x.clone()``: read every pixel once,
write it once) per image, over the package's time. No batched float implementation can beat it,
so where it exceeds 0.05 the target is out of reach on this CPU for any implementation, not just
ctta's; the summary counts those cells.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy, scipy and OpenCV load their thread pools

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ctta.data.corruptions import CORRUPTIONS, corrupt  # noqa: E402
from ctta.data.corruptions.params import _PARAMS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imagecorruptions_compat  # noqa: E402

SEVERITY = 3


def natural_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: colour gradients, a disc and stripes (when no real images are there)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    p = torch.rand(n, 8, 1, 1, generator=g)
    img = torch.stack([0.2 + 0.6 * xx * p[:, 0], 0.3 + 0.4 * yy * p[:, 1], 0.7 - 0.4 * xx * yy * p[:, 2]], 1)
    disc = ((xx - p[:, 3]) ** 2 + (yy - p[:, 4]) ** 2 < 0.05)[:, None]
    img = torch.where(disc, p[:, 5:8], img)
    stripes = torch.sin(2 * math.pi * size / 10 * (xx + yy * p[:, 3]))[:, None]
    img = (img + 0.1 * stripes * (yy > 0.6)).clamp(0, 1)
    return (img * 255).round().byte().permute(0, 2, 3, 1).numpy()


def load_images(folder: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    path = folder / "cifar10_test_first1000_lossless.npz"
    if not path.exists():
        return natural_images(n, 32), natural_images(n, 224, seed=1), "synthetic images"
    small = np.load(path)["x_test"][:n]
    large = np.stack([np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC)) for img in small])
    return small, large, f"CIFAR-10 test images 0..{n - 1}"


def time_pair(images: np.ndarray, name: str, variant: str, function, repeats: int, budget: float):
    """Per-image seconds over ``repeats`` rounds: (ctta on the batch, the package image by image,
    one copy of the batch)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    corrupt(x[:2], name, SEVERITY, variant=variant)  # warm-up: caches, lazy imports
    function(Image.fromarray(images[0]), SEVERITY)
    ours, theirs, copies, next_image = [], [], [], 0
    for repeat in range(repeats):
        start = time.perf_counter()
        corrupt(x, name, SEVERITY, seed=repeat, variant=variant)
        ours.append((time.perf_counter() - start) / len(x))
        start = time.perf_counter()
        x.clone()
        copies.append((time.perf_counter() - start) / len(x))
        count, start = 0, time.perf_counter()
        while count < 2 or (time.perf_counter() - start < budget and count < len(images)):
            np.uint8(function(Image.fromarray(images[next_image % len(images)]), SEVERITY))
            count, next_image = count + 1, next_image + 1
        theirs.append((time.perf_counter() - start) / count)
    return ours, theirs, copies


def cell(times: list[float]) -> str:
    ms = [t * 1e3 for t in times]
    return f"{statistics.median(ms):.3f} ({min(ms):.3f}-{max(ms):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 repeats, short budget")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of package time per repeat")
    parser.add_argument("--data", default=os.environ.get("CTTA_REALDATA", "/work/realdata"))
    parser.add_argument("--names", default=",".join(CORRUPTIONS))
    args = parser.parse_args()
    batch, repeats, budget = (8, 2, 0.1) if args.quick else (args.batch, args.repeats, args.budget)
    package = imagecorruptions_compat.load_for_benchmark()
    if package is None:
        return
    cifar = imagecorruptions_compat.cifar_functions(package, _PARAMS)
    small, large, source = load_images(Path(args.data), batch)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread; severity {SEVERITY}; batch {batch}; {source}")
    print(
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on {os.cpu_count()} cores"
    )
    ratios, floors = {}, {}
    for size, images, variant in ((32, small, "cifar"), (224, large, "imagenet")):
        print(f"\n{size} px ({variant} constants): ms per image, median over {repeats} repeats (min-max)")
        print("| corruption | ctta | imagecorruptions | ratio | copy floor |")
        print("|---|---|---|---|---|")
        for name in args.names.split(","):
            function = getattr(package.corruptions, name)
            function = cifar.get(name, function) if size == 32 else function
            ours, theirs, copies = time_pair(images, name, variant, function, repeats, budget)
            ratio = statistics.median(ours) / statistics.median(theirs)
            floor = statistics.median(copies) / statistics.median(theirs)
            ratios[size, name], floors[size, name] = ratio, floor
            print(f"| {name} | {cell(ours)} | {cell(theirs)} | {ratio:.3f} | {floor:.3f} |", flush=True)
    worst = max(ratios, key=ratios.get)
    met = sum(r <= 0.05 for r in ratios.values())
    print(
        f"\nratio <= 0.05 for {met} of {len(ratios)}; worst {worst[1]} at {worst[0]} px ({ratios[worst]:.2f})"
    )
    beyond = sorted(f"{name} {size} px" for (size, name), floor in floors.items() if floor > 0.05)
    print(
        f"copy floor above 0.05 (target out of reach for a float batch) for {len(beyond)}: {', '.join(beyond)}"
    )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
