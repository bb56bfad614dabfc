"""Domains made from a dataset that records none: every domain is the same samples under one
input transform, as in rotated and permuted MNIST (Lopez-Paz & Ranzato, "Gradient Episodic
Memory for Continual Learning", NeurIPS 2017) or a stream of common corruptions.

A transform is named by a string, which is also the domain's name:

- `none`: the images as they are;
- `rotate:<degrees>`: rotation about the centre (bilinear; the corners repeat the border);
- `permute:<seed>`: one fixed permutation of the pixel positions drawn from `<seed>`, the same
  for every image and channel (permuted MNIST);
- `<corruption>:<severity>`: a common corruption (`ctta.data.corruptions`, severity 1..5),
  its noise drawn from the run seed.

The transformed images are computed once and held in memory as uint8 (cap the samples per
class on large datasets); their identity is the source view's plus the transforms and seed,
so feature caches follow them without hashing every image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.files import content_key
from ..core.seeding import derive_seed
from .corruptions import ALL_CORRUPTIONS, corrupt
from .images import ImageData

TRANSFORM_SYNTAX = "none, rotate:<degrees>, permute:<seed>, <corruption>:<severity 1-5>"
CHUNK = 256  # images transformed at once (bounded float memory)
MEMO_SIZE = 16  # transformed datasets kept per process, as load_dataset keeps loaded ones
_MEMO: dict[str, ImageData] = {}


def check_transform(name: str) -> None:
    """UserError unless `name` is a valid transform string."""
    kind, _, arg = name.partition(":")
    try:
        if kind == "none" and not arg:
            return
        if kind == "rotate":
            float(arg)
            return
        if kind == "permute":
            int(arg)
            return
        if kind in ALL_CORRUPTIONS and 1 <= int(arg) <= 5:
            return
    except ValueError:
        pass
    raise UserError(
        f"invalid domain transform {name!r}; valid forms: {TRANSFORM_SYNTAX} "
        f"(corruptions: {', '.join(ALL_CORRUPTIONS)})"
    )


def apply_transform(x: torch.Tensor, name: str, *, seed: int) -> torch.Tensor:
    """Images x [B, C, H, W] in [0, 1] under transform `name`; `seed` draws corruption noise."""
    kind, _, arg = name.partition(":")
    if kind == "none":
        return x
    if kind == "rotate":
        return rotate(x, float(arg))
    if kind == "permute":
        h, w = x.shape[-2:]
        perm = torch.as_tensor(np.random.default_rng(int(arg)).permutation(h * w), device=x.device)
        return x.flatten(-2)[..., perm].view_as(x)
    return corrupt(x, kind, int(arg), seed=seed)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Counter-clockwise rotation about the image centre, bilinear, border pixels repeated."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def transformed_domains(data: ImageData, transforms: Sequence[str], seed: int) -> ImageData:
    """One dataset holding every sample of `data` once per transform; domain i is `transforms[i]`.
    Memoised per process (like `load_dataset`): the same request gives the same object, so a
    process that builds the stream again (every run of a sweep worker, the protocol checks)
    transforms once, and views from two builds can be joined (`ImageData.union`)."""
    for name in transforms:
        check_transform(name)
    if len(set(transforms)) != len(transforms):
        raise UserError(f"domain transforms must be distinct, got {list(transforms)}")
    key = content_key({"from": data.identity(), "transforms": list(transforms), "seed": seed})
    if key not in _MEMO:
        _MEMO[key] = _transform(data, transforms, seed, key)
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
    return _MEMO[key]


def _transform(data: ImageData, transforms: Sequence[str], seed: int, key: str) -> ImageData:
    parts = []
    for d, name in enumerate(transforms):
        for c, start in enumerate(range(0, len(data), CHUNK)):
            x, _ = data.load(np.arange(start, min(start + CHUNK, len(data))))
            x = apply_transform(x, name, seed=derive_seed(seed, d, c))
            parts.append(x.mul(255).round_().to(torch.uint8))
    images = torch.cat(parts) if parts else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    out = ImageData.from_arrays(
        images,
        np.tile(data.targets, len(transforms)),
        data.class_names,
        name=data.name,
        domains=np.repeat(np.arange(len(transforms)), len(data)),
        domain_names=list(transforms),
    )
    out.derivation = key
    # a pickled view (e.g. for a worker process) carries the recipe, not the images
    out.reload = functools.partial(transformed_domains, data, tuple(transforms), seed)
    return out
