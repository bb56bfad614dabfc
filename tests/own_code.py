"""A user's own network module, checkpoint and data files, as the bring-your-own tests write them.

`write_user_project(folder)` writes `byo_nets.py` (a small BatchNorm CNN, an MLP without
normalisation layers), trains the CNN for a few seconds on the digits train split at 16 px
with its own input statistics (mean 0.5, std 0.25), saves the checkpoint as DataParallel
would (`module.` prefix, nested under `state_dict`), and saves the digits as `digits.npz`
(train: N×H×W×C uint8, test: N×C×H×W float).
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

NETS = textwrap.dedent('''
    """A user's networks: nothing here knows about ctta."""
    from torch import nn


    class BNNet(nn.Module):
        def __init__(self, num_classes=10, width=8):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.fc = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.fc(self.body(x))


    def build(num_classes=10, width=8):
        return BNNet(num_classes, width)


    def build_mlp(num_classes=10, hidden=32):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
''')
MEAN, STD, SIZE = 0.5, 0.25, 16
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N×8×8×3 uint8, labels) of ctta's fixed digits split."""
    from ctta.data.datasets import load_dataset

    data = load_dataset("digits", split, 8)
    x, y = data.load(np.arange(len(data)))
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), y.numpy()


def load_user_module(folder: Path, name: str = "byo_nets"):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_user_project(folder: Path) -> torch.nn.Module:
    """Write the module, data and checkpoint into `folder`; returns the trained network."""
    (folder / "byo_nets.py").write_text(NETS)
    x_train, y_train = digits_split("train")
    x_test, y_test = digits_split("test")
    np.savez(
        folder / "digits.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test.transpose(0, 3, 1, 2).astype(np.float32) / 255,
        y_test=y_test,
        class_names=np.array(CLASS_NAMES),
    )
    torch.manual_seed(0)
    net = load_user_module(folder).build()
    x = F.interpolate(torch.tensor(x_train).permute(0, 3, 1, 2).float() / 255, size=SIZE, mode="bilinear")
    y = torch.tensor(y_train)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(5):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(net((x[idx] - MEAN) / STD), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 5, "state_dict": state}, folder / "ckpt.pt")
    return net


def model_options() -> list[str]:
    """The CLI's backbone options for the trained CNN."""
    return [
        "--backbone",
        "byo_nets:build",
        "-B",
        "weights=ckpt.pt",
        "-B",
        f"mean=[{MEAN}, {MEAN}, {MEAN}]",
        "-B",
        f"std=[{STD}, {STD}, {STD}]",
        "-B",
        f"image_size={SIZE}",
    ]
