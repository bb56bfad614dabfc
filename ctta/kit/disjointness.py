"""What a protocol proves about its two phases: same scenario shape, disjoint samples and classes.

Streams expose every dataset they use (`stream.data()`); samples are compared by content hash
(`ImageData.sample_keys`: image bytes, or file bytes for image folders), classes by name. The
labelled source data of a test-time stream (what its source model is trained on) is shared by
design between phases and left out of the comparison; everything a method adapts on or is
scored on is compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..api import ContinualStream, TestStream
from ..data.images import ImageData


def stream_shape(stream: ContinualStream | TestStream) -> dict[str, Any]:
    """What must match between the tune and eval streams of `tune_eval`: the stream kind and,
    for continual learning, the number of tasks, classes per task and shots/ways if the
    scenario declares them; for test-time streams, whether the method is reset between shifts."""
    info = stream.info
    shape: dict[str, Any] = {"kind": info.kind}
    if isinstance(stream, ContinualStream):
        shape["tasks"] = len(stream.tasks)
        shape["classes_per_task"] = [len(t.classes) for t in stream.tasks]
    else:
        shape["reset_on_domain_change"] = stream.reset_on_domain_change
    for key in ("shots", "ways"):
        if key in info.extra:
            shape[key] = info.extra[key]
    return shape


def scored_data(streams: Iterable[ContinualStream | TestStream]) -> list[ImageData]:
    """Every dataset of the streams except the source data of test-time streams."""
    return [data for s in streams for name, data in s.data() if name != "source"]


def sample_keys(datasets: Iterable[ImageData]) -> set[str]:
    """Content hashes of every sample of the views, each underlying sample hashed once."""
    merged: dict[int, tuple[ImageData, set[int]]] = {}
    for d in datasets:
        merged.setdefault(id(d._storage), (d, set()))[1].update(d.indices.tolist())
    keys: set[str] = set()
    for base, indices in merged.values():
        keys.update(base._view(np.array(sorted(indices), dtype=np.int64)).sample_keys())
    return keys


def class_names(datasets: Iterable[ImageData]) -> set[str]:
    """Names of the classes that occur in the views (relabelled views keep their names)."""
    return {d.class_names[t] for d in datasets for t in np.unique(d.targets)}


def compare(tune: list[ImageData], scored: list[ImageData]) -> dict[str, Any]:
    """Sample and class overlap between the tune-phase data and the scored data."""
    tune_keys, scored_keys = sample_keys(tune), sample_keys(scored)
    tune_classes, scored_classes = class_names(tune), class_names(scored)
    return {
        "tune_samples": len(tune_keys),
        "eval_samples": len(scored_keys),
        "shared_samples": len(tune_keys & scored_keys),
        "tune_classes": len(tune_classes),
        "eval_classes": len(scored_classes),
        "shared_classes": sorted(tune_classes & scored_classes),
    }
