"""Check ctta's RobustBench architectures against RobustBench's own model zoo: the same
state-dict keys and shapes, and the same outputs for the same (random) weights.

RobustBench is not a ctta dependency (its PyPI release pins timm==1.0.9 and imports
`autoattack`, which PyPI lacks), so install it beside ctta without its dependencies and run:

    pip download --no-deps -d wheels robustbench geotorch torchdiffeq pyautoattack
    pip install --no-deps --target /tmp/rb wheels/*.whl
    PYTHONPATH=/tmp/rb python tools/check_robustbench_archs.py

It prints one line per architecture of `ctta.models.robustbench_archs.ARCHITECTURES` and the
sha1 layouts that `tests/test_model_zoos.py` pins; it exits non-zero on any difference.
"""

from __future__ import annotations

import hashlib
import sys
import warnings

import torch


def layout(net: torch.nn.Module) -> str:
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
    return hashlib.sha1(lines.encode()).hexdigest()[:12]


def main() -> int:
    warnings.filterwarnings("ignore")
    import pyautoattack  # RobustBench imports it under the name of its GitHub release

    sys.modules.setdefault("autoattack", pyautoattack)
    import robustbench.model_zoo.imagenet as imagenet_zoo
    import torchvision.models as tvm
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    from ctta.models.robustbench_archs import ARCHITECTURES

    for name in ("resnet50", "wide_resnet50_2"):  # its Standard_R50 asks for pretrained weights
        builder = getattr(tvm, name)
        setattr(imagenet_zoo.pt_models, name, lambda *a, _b=builder, **k: _b(weights=None))
    bad = 0
    for key, build in ARCHITECTURES.items():
        dataset, threat_model, name = key.split("/")
        theirs = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][name]["model"]().eval()
        torch.manual_seed(0)
        ours = build().eval()
        same = list(ours.state_dict()) == list(theirs.state_dict()) and layout(ours) == layout(theirs)
        theirs.load_state_dict(ours.state_dict())
        x = torch.rand(2, 3, 224 if dataset == "imagenet" else 32, 224 if dataset == "imagenet" else 32)
        with torch.no_grad():
            diff = (ours(x) - theirs(x)).abs().max().item()
        bad += not same or diff > 1e-4
        print(f"{key:50s} same layout: {same}  max |output difference|: {diff:.1e}  layout {layout(theirs)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
