"""Test-time loop overhead: ctta's engine vs a bare PyTorch loop doing the same passes.

A CIFAR ResNet-20 (random weights, BatchNorm, 0.27 M parameters, given to the engine as a
module object) streams 5,000 32 px images (scikit-learn's digits, upsampled and repeated,
written to an .npz) under one corruption in batches of 64. Per method, the engine
(`ctta.run.execute`: spec, backbone wrapping, stream, method, online scoring, record; no
store) runs against a bare loop that loads the same .npz, corrupts each batch with
`ctta.kit.corrupt` and does the method's forward and backward passes itself: `source`
(eval), `bn_adapt` (test-batch BatchNorm statistics), `tent` (entropy, Adam on the BN affine
parameters), `cotta` (mean teacher averaging 32 augmentations per batch with
`ctta.kit.tta_augment`, one teacher pass per augmentation as in the reference code, EMA,
stochastic restore; on fewer images by default, it costs about 35 forward passes a batch).
Both sides start from the .npz and the module object and run interleaved in one process with
one torch thread. Printed per method: the medians over repeats of wall time and of the
process's CPU time (all its threads, the engine's memory sampler included), their ratios
(target <= 1.1) and the range of the paired ratios. On a shared machine the CPU-time ratio
is the steadier one: wall time then mostly measures the scheduler.

    python benchmarks/tta_loop.py [--images 5000] [--cotta-images 640] [--repeats 3] [--methods ...]
                                  [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctta.kit import corrupt, tta_augment
from ctta.run import execute

CORRUPTION, SEVERITY, BATCH = "gaussian_noise", 5, 64


# --------------------------------------------------------------------------- the network
class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a projection shortcut where the shape changes (option B)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    """He et al. 2016's CIFAR ResNet-20: 16-32-64 channels, three blocks per stage."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(
                nn.Sequential(
                    *(BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(3))
                )
            )
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# --------------------------------------------------------------------------- data
def write_data(folder: Path, images: int) -> Path:
    """`images` test images (an equal number per class) and 100 training images, 32 px uint8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    x = F.interpolate(x, size=32, mode="bilinear").repeat(1, 3, 1, 1)
    x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    per_class = images // 10
    test = np.concatenate([np.resize(np.flatnonzero(d.target == c), per_class) for c in range(10)])
    path = folder / f"digits32_{images}.npz"
    np.savez(path, x_train=x[:100], y_train=d.target[:100], x_test=x[test], y_test=d.target[test])
    return path


def engine_spec(net: nn.Module, method: str, path: Path, images: int) -> dict:
    scenario = {
        "name": "corruption",
        "dataset": {"name": "arrays", "path": str(path)},
        "corruptions": [CORRUPTION],
        "severity": SEVERITY,
        "batch_size": BATCH,
        "test_per_class": images // 10,
    }
    backbone = {"model": net, "normalize": "none", "image_size": 32}
    return {"scenario": scenario, "method": method, "backbone": backbone, "seed": 0}


# --------------------------------------------------------------------------- bare loops
def bn_batch_statistics(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
            m.track_running_stats, m.running_mean, m.running_var = False, None, None


def entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


class BareTent:
    def __init__(self, model):
        self.model = model
        bn_batch_statistics(model)
        model.requires_grad_(False)
        params = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in (m.weight, m.bias)]
        for p in params:
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(params, lr=1e-3)

    def __call__(self, x):
        logits = self.model(x)
        loss = entropy(logits).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return logits.detach()


class BareCoTTA:
    """CoTTA's CIFAR defaults (Adam 1e-3, ap 0.92, mt 0.999, rst 0.01, 32 augmentations)."""

    def __init__(self, model):
        self.model = model
        bn_batch_statistics(model)
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.anchor = copy.deepcopy(model).requires_grad_(False)

    def __call__(self, x):
        logits = self.model(x)
        with torch.no_grad():
            if self.anchor(x).softmax(1).max(1).values.mean() < 0.92:
                teacher = torch.stack([self.teacher(tta_augment(x)) for _ in range(32)]).mean(0)
            else:
                teacher = self.teacher(x)
        loss = -(teacher.softmax(1) * logits.log_softmax(1)).sum(1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters()):
                t.mul_(0.999).add_(s, alpha=0.001)
            for p, q in zip(self.model.parameters(), self.anchor.parameters()):
                p.copy_(torch.where(torch.rand_like(p) < 0.01, q, p))
        return teacher


def bare_method(name: str, model: nn.Module):
    if name == "source":
        model.eval()
        return torch.no_grad()(model)
    if name == "bn_adapt":
        bn_batch_statistics(model)
        return torch.no_grad()(model)
    return {"tent": BareTent, "cotta": BareCoTTA}[name](model)


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_bare(net: nn.Module, method: str, path: Path, images: int, device: str) -> None:
    data = np.load(path)
    x_all = torch.from_numpy(data["x_test"]).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(data["y_test"])
    step = bare_method(method, copy.deepcopy(net).to(device))
    correct = 0
    for b, start in enumerate(range(0, len(y_all), BATCH)):
        x = x_all[start : start + BATCH].to(device).float().div_(255)
        x = corrupt(x, CORRUPTION, SEVERITY, seed=b)
        correct += int((step(x).argmax(1) == y_all[start : start + BATCH].to(device)).sum())
    assert len(y_all) == images


def run_engine(net: nn.Module, method: str, path: Path, images: int, device: str) -> None:
    record = execute(engine_spec(net, method, path, images), device=device)
    assert record["status"] == "done", record.get("error")
    assert sum(record["online_n"]) == images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--cotta-images", type=int, default=640, help="CoTTA's stream (about 35 passes a batch)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["source", "bn_adapt", "tent", "cotta"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU, the wall-time ratio is the one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = ResNet20()
    print(f"torch threads: 1, repeats: {args.repeats}, load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            images = 10 * ((args.cotta_images if method == "cotta" else args.images) // 10)  # 10 classes
            path = write_data(Path(tmp), images)
            run_engine(net, method, path, images, args.device)  # warm-up: imports, first uses
            run_bare(net, method, path, images, args.device)
            engine, bare = [], []
            for _ in range(args.repeats):
                engine.append(timed(run_engine, net, method, path, images, args.device))
                bare.append(timed(run_bare, net, method, path, images, args.device))
            print(f"{method}: {images} images, {-(-images // BATCH)} batches of {BATCH}")
            for i, clock in enumerate(("wall", "CPU")):
                e = statistics.median(t[i] for t in engine)
                b = statistics.median(t[i] for t in bare)
                paired = [t[i] / u[i] for t, u in zip(engine, bare)]
                print(
                    f"  {clock:4s} engine {e:7.2f} s  bare {b:7.2f} s  ratio {e / b:.3f} (paired "
                    f"{min(paired):.3f}..{max(paired):.3f}; target <= 1.1)  engine runs: "
                    f"{', '.join(f'{t[i]:.2f}' for t in engine)}; bare: {', '.join(f'{t[i]:.2f}' for t in bare)}",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
