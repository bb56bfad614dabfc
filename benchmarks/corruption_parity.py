"""ctta's corruptions against the ``imagecorruptions`` package on real CIFAR-10 test images.

    python benchmarks/corruption_parity.py [--data DIR] [--images-224 32] [--images-32 1000] [--out FILE]

Needs ``cifar10_test_first1000_lossless.npz``, ``arch_resnet_cifar_akamaster.py`` and
``checkpoints/akamaster_resnet20-12fca82f.th`` in DIR (default $CTTA_REALDATA or /work/realdata; see
that folder's README; nothing of it is in the repository) and exits 0 with a message when they are
absent. For each of the 15 corruptions and 5 severities, on the same clean images:

- 224 px (the package's native recipe, ctta ``variant="imagenet"``): test images upsampled with
  Pillow's bicubic filter. Per image, PSNR to the clean image (mean and std over images, both
  outputs truncated to 8 bits as the package and the original scripts save them).
- 32 px (ctta ``variant="cifar"``): the package has only ImageNet constants, so its functions are
  recompiled with make_cifar_c.py's (``imagecorruptions_compat.cifar_functions``; elastic
  transform has no counterpart). PSNR as above, and the accuracy of the pretrained CIFAR-10
  ResNet-20 (akamaster) on both outputs, with the paired standard error of the difference.

Frost is also held against make_cifar_c.py's own recipe (``imagecorruptions_compat.original_cifar_frost``):
the package enlarges its photographs by 1.1 before cropping, the original does not.

Verdicts: PSNR "same" when the means differ by at most 0.5 dB, "close" up to 1.5 dB; accuracy
"same" when the difference is within 2 paired standard errors or 2 points. Randomness differs
by design (torch generator against numpy's global stream), so only distributions are compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ctta.data.corruptions import CORRUPTIONS, corrupt
from ctta.data.corruptions.params import _PARAMS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imagecorruptions_compat  # noqa: E402

DATA = "cifar10_test_first1000_lossless.npz"
ARCH = "arch_resnet_cifar_akamaster.py"
CHECKPOINT = "checkpoints/akamaster_resnet20-12fca82f.th"


def psnr(images: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 [N, H, W, 3] arrays."""
    mse = ((images.astype(np.float64) - clean.astype(np.float64)) / 255) ** 2
    return 10 * np.log10(1 / np.maximum(mse.mean((1, 2, 3)), 1e-12))


def ctta_uint8(images: np.ndarray, name: str, severity: int, variant: str) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    out = corrupt(x, name, severity, seed=severity, variant=variant)
    return (out * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # np.uint8(x * 255): truncation


def package_uint8(images: np.ndarray, function, severity: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # the package draws from numpy's global stream
    return np.stack([np.uint8(function(Image.fromarray(img), severity)) for img in images])


def load_classifier(folder: Path):
    spec = importlib.util.spec_from_file_location("akamaster_arch", folder / ARCH)
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    model = arch.load(str(folder / CHECKPOINT), 20)
    mean, std = torch.tensor(arch.MEAN).view(1, 3, 1, 1), torch.tensor(arch.STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return torch.cat([model((b - mean) / std).argmax(1) for b in x.split(500)]).numpy()

    return predict


def verdict_psnr(a: np.ndarray, b: np.ndarray) -> str:
    gap = abs(a.mean() - b.mean())
    return "same" if gap <= 0.5 else "close" if gap <= 1.5 else "differs"


def compare_accuracy(ours: np.ndarray, theirs: np.ndarray, labels: np.ndarray) -> dict:
    a, b = ours == labels, theirs == labels
    n = len(labels)
    diff = a.mean() - b.mean()
    se = np.sqrt((a != b).sum()) / n  # paired (McNemar) standard error of the difference
    return {
        "acc_ctta": 100 * a.mean(),
        "acc_package": 100 * b.mean(),
        "diff": 100 * diff,
        "se": 100 * se,
        "verdict": "same" if abs(diff) <= max(2 * se, 0.02) else "differs",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CTTA_REALDATA", "/work/realdata"))
    parser.add_argument("--images-224", type=int, default=32)
    parser.add_argument("--images-32", type=int, default=1000)
    parser.add_argument("--names", default=",".join(CORRUPTIONS))
    parser.add_argument("--severities", default="1,2,3,4,5")
    parser.add_argument("--out", help="write every number as JSON here")
    args = parser.parse_args()
    folder = Path(args.data)
    missing = [p for p in (DATA, ARCH, CHECKPOINT) if not (folder / p).exists()]
    if missing:
        print(f"skipped: real-data files missing in {folder}: {', '.join(missing)} (see --data)")
        return
    package = imagecorruptions_compat.load_for_benchmark()
    if package is None:
        return
    names, severities = args.names.split(","), [int(s) for s in args.severities.split(",")]
    data = np.load(folder / DATA)
    small, labels = data["x_test"][: args.images_32], data["y_test"][: args.images_32]
    large = np.stack(
        [
            np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC))
            for img in small[: args.images_224]
        ]
    )
    cifar = imagecorruptions_compat.cifar_functions(package, _PARAMS)
    original_frost = imagecorruptions_compat.original_cifar_frost(package, _PARAMS)
    predict = load_classifier(folder)
    clean_accuracy = 100 * (predict(small) == labels).mean()
    print(
        f"{len(small)} images at 32 px (clean ResNet-20 accuracy {clean_accuracy:.1f} %), {len(large)} at 224 px"
    )
    print(
        "| corruption | sev | 224 px PSNR ctta | package | verdict | 32 px PSNR ctta | package | verdict "
        "| acc ctta | acc package | diff ± se | verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        for severity in severities:
            start = time.perf_counter()
            row = {"name": name, "severity": severity}
            a = psnr(ctta_uint8(large, name, severity, "imagenet"), large)
            b = psnr(package_uint8(large, getattr(package.corruptions, name), severity, severity), large)
            row.update(psnr224_ctta=(a.mean(), a.std()), psnr224_package=(b.mean(), b.std()))
            row["verdict224"] = verdict_psnr(a, b)
            cells = f"{a.mean():.2f} ± {a.std():.2f} | {b.mean():.2f} ± {b.std():.2f} | {row['verdict224']}"
            ours = ctta_uint8(small, name, severity, "cifar")
            if name in cifar:
                theirs = package_uint8(small, cifar[name], severity, severity)
                a, b = psnr(ours, small), psnr(theirs, small)
                row.update(psnr32_ctta=(a.mean(), a.std()), psnr32_package=(b.mean(), b.std()))
                row["verdict32"] = verdict_psnr(a, b)
                row.update(compare_accuracy(predict(ours), predict(theirs), labels))
                cells += (
                    f" | {a.mean():.2f} ± {a.std():.2f} | {b.mean():.2f} ± {b.std():.2f} | {row['verdict32']}"
                    f" | {row['acc_ctta']:.1f} | {row['acc_package']:.1f} | {row['diff']:+.1f} ± {row['se']:.1f}"
                    f" | {row['verdict']} |"
                )
            else:
                a = psnr(ours, small)
                row["psnr32_ctta"] = (a.mean(), a.std())
                row["acc_ctta"] = 100 * (predict(ours) == labels).mean()
                cells += f" | {a.mean():.2f} ± {a.std():.2f} | - | - | {row['acc_ctta']:.1f} | - | - | - |"
            rows.append(row)
            print(f"| {name} | {severity} | {cells}", flush=True)
            if name == "frost":
                theirs = package_uint8(small, original_frost, severity, severity)
                row["original"] = compare_accuracy(predict(ours), predict(theirs), labels)
                o = row["original"]
                print(
                    f"  frost {severity} against make_cifar_c.py's recipe (no 1.1 enlargement): ctta {o['acc_ctta']:.1f}, "
                    f"original {o['acc_package']:.1f}, diff {o['diff']:+.1f} ± {o['se']:.1f} ({o['verdict']})",
                    flush=True,
                )
            print(f"  {name} {severity}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps({"clean_accuracy": clean_accuracy, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
