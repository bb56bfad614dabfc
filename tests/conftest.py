"""Test settings: CPU only, a private cache per session, no network, few threads."""

import os

import pytest
import torch

os.environ["CTTA_DEVICE"] = "cpu"
# One intra-op thread: on a machine whose cores are shared (CI, 2 cores for several jobs),
# two threads made small-tensor tests (double backward, per-batch adaptation) 10x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Everything ctta caches (rendered data, source models, pretrained stand-ins) goes to a temp dir."""
    path = tmp_path_factory.mktemp("ctta-cache")
    old = os.environ.get("CTTA_CACHE")
    os.environ["CTTA_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CTTA_CACHE", None)
    else:
        os.environ["CTTA_CACHE"] = old


@pytest.fixture
def store(tmp_path):
    from ctta.run.store import Store

    return Store(tmp_path / "results")
