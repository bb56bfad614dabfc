"""Backbones from any torch.nn.Module a user brings: a factory named `module.path:callable`,
or a module object passed through the Python API.

ctta splits the network into a feature extractor (the trunk) and a classifier (the head):

1. `head=<module name>` (e.g. `fc`, `linear`, `head`, `classifier.1`) names the final linear
   layer; `head=none` declares that the network has no classifier (its output is the feature
   vector, and a new head is trained wherever one is needed);
2. otherwise timm models name it in `pretrained_cfg["classifier"]`;
3. otherwise a network that defines a `features(x)` method (returning [B, D]) is split into
   that method and the final linear layer over D features;
4. otherwise the conventional names (fc, linear, head, classifier, last_linear, logits) and
   the last nn.Linear registered are tried.

Every candidate is checked on a probe batch: the network's output must equal head(trunk(x)).
The trunk is the network with the head replaced by nn.Identity (or its `features` method),
so everything else the network does (pooling, flattening, dropout) stays. When no candidate
passes, one error names what to declare. Input normalisation and the input size belong to
the spec: `mean`/`std` or `normalize`, and `image_size` (both default to a timm model's
pretrained_cfg). `weights=<file>` loads a checkpoint (`weights_only=True` unless told
otherwise; DataParallel's `module.` prefix, nesting under `state_dict` and a prefix shared by
every key, as Lightning's `model.`, are handled). `stages=layer1,layer2,layer3` declares where
the network's stages end (module paths; otherwise `ctta.kit.stages` finds them).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..core.errors import UserError, few
from ..core.files import content_key
from ..core.registry import BACKBONES, register_backbone
from ..core.user_code import call, import_object, options_signature, parameters_of, source_fingerprint
from .backbone import Backbone, FeaturesTrunk, file_fingerprint, load_state_dict, normalization

log = logging.getLogger(__name__)

HEAD_NAMES = ("fc", "linear", "head", "classifier", "last_linear", "logits")


def from_module(
    net: nn.Module,
    *,
    name: str,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: str | None = None,
    head: str | None = None,
    trained_head: bool = True,
    weights: str | None = None,
    strict: bool = True,
    weights_only: bool = True,
    stages: str | Sequence[str] | None = None,
) -> Backbone:
    """Wrap `net` as a Backbone (in place: the head module inside `net` becomes nn.Identity)."""
    where = f"backbone {name!r} ({type(net).__name__})"
    if not isinstance(net, nn.Module):
        raise UserError(f"backbone {name!r} is a {type(net).__name__}, not a torch.nn.Module")
    if weights:
        load_weights(net, weights, strict=strict, weights_only=weights_only, where=where)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    if image_size is None:
        if "input_size" not in cfg:
            raise UserError(f"{where}: declare image_size=<the input size the model was trained on>")
        image_size = int(cfg["input_size"][-1])
    default = (cfg["mean"], cfg["std"]) if "mean" in cfg and "std" in cfg else None
    mean, std = normalization(mean, std, normalize, default, where)
    trunk, layer, feature_dim = split_head(net, head, _probe(image_size, mean, std), where)
    kind = "vit" if trunk is net and hasattr(net, "blocks") and hasattr(net, "patch_embed") else "generic"
    backbone = Backbone(
        trunk,
        feature_dim,
        name=name,
        image_size=image_size,
        mean=mean,
        std=std,
        head=layer if trained_head else None,
        kind=kind,
    )
    backbone.declare_stages(stages)
    return backbone


# --------------------------------------------------------------------------- finding the head
def split_head(
    net: nn.Module, head: str | None, probe: torch.Tensor, where: str
) -> tuple[nn.Module, nn.Linear | None, int]:
    """(trunk, head layer, feature dim) of `net`, each candidate checked on `probe`."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = _logits(net(probe), where)
            if head == "none":
                return net, None, out.shape[1]
            declared_features = _declares_features(net)
            feats = _logits(net.features(probe), f"{where}: features(x)") if declared_features else None
            tried = []
            for path in [head] if head else _candidates(net, feats):
                layer = _linear(net, path, where, declared=head is not None)
                if layer is None or layer.out_features != out.shape[1]:
                    tried += [path] if layer is not None else []
                    continue
                parent, attr = _parent(net, path)
                setattr(parent, attr, nn.Identity())
                trunk = FeaturesTrunk(net) if declared_features else net
                z = trunk(probe)
                if (
                    z.dim() == 2
                    and z.shape[1] == layer.in_features
                    and torch.allclose(layer(z), out, rtol=1e-4, atol=1e-5 * (1 + out.abs().max().item()))
                ):
                    return trunk, layer, layer.in_features
                setattr(parent, attr, layer)  # not the final layer: put it back
                tried.append(path)
    finally:
        net.train(was_training)
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if head:
        raise UserError(
            f"{where}: head={head!r} is not the final layer (the output is not head(rest of the "
            f"network)); its linear layers: {', '.join(linears) or '(none)'}; or pass head=none"
        )
    why = f"tried {', '.join(tried)}" if tried else f"none of {', '.join(HEAD_NAMES)} is an nn.Linear"
    raise UserError(
        f"{where}: cannot tell its classifier: no nn.Linear whose output is the network's output "
        f"({why}); declare head=<name of the final nn.Linear> (its linear layers: "
        f"{', '.join(linears) or '(none)'}), or head=none to use the whole output as features"
    )


def _declares_features(net: nn.Module) -> bool:
    """A `features(x)` method (torchvision's `features` *submodules* return unpooled maps)."""
    return callable(getattr(net, "features", None)) and not isinstance(net.features, nn.Module)


def _candidates(net: nn.Module, feats: torch.Tensor | None) -> list[str]:
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if feats is not None:
        return [n for n, m in reversed(linears) if m.in_features == feats.shape[1]][:3]
    cfg = getattr(net, "pretrained_cfg", None) or {}
    names = [cfg["classifier"]] if isinstance(cfg.get("classifier"), str) else []
    names += [n for n in HEAD_NAMES if isinstance(getattr(net, n, None), nn.Linear)]
    names += [linears[-1][0]] if linears else []
    return list(dict.fromkeys(names))


def _linear(net: nn.Module, path: str, where: str, declared: bool) -> nn.Linear | None:
    try:
        layer = net.get_submodule(path)
    except AttributeError:
        layer = None
    if isinstance(layer, nn.Linear):
        return layer
    if not declared:
        return None
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    got = "no such module" if layer is None else f"a {type(layer).__name__}, not an nn.Linear"
    raise UserError(
        f"{where}: head={path!r} is {got}; its linear layers: {', '.join(linears) or '(none)'} (or head=none)"
    )


def _parent(net: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent, _, attr = path.rpartition(".")
    return (net.get_submodule(parent) if parent else net), attr


def _logits(out: Any, where: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{where}: the network must return a [batch, outputs] tensor, got {got}")
    return out


def _probe(image_size: int, mean, std) -> torch.Tensor:
    # A fixed generator: probing must not move the run's random stream.
    x = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    if mean is None:
        return x
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


# --------------------------------------------------------------------------- checkpoints
def load_weights(net: nn.Module, path: str, *, strict: bool, weights_only: bool, where: str) -> None:
    """Load a checkpoint into `net`. A prefix shared by every key (`model.`, `backbone.`) is
    dropped when that is what makes the keys match the network's."""
    state = load_state_dict(path, weights_only=weights_only)
    own = set(net.state_dict())
    while not own & set(state) and all("." in k for k in state):
        prefixes = {k.split(".", 1)[0] for k in state}
        if len(prefixes) != 1:
            break
        state = {k.split(".", 1)[1]: v for k, v in state.items()}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise UserError(f"{where}: checkpoint {path} does not fit: {detail}") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if strict and (missing or unexpected):
        raise UserError(
            f"{where}: checkpoint {path} does not fit: missing keys {few(missing, 4)}, unexpected keys "
            f"{few(unexpected, 4)}; pass strict=false to load the keys that match"
        )
    if missing or unexpected:
        log.warning("%s: %d missing and %d unexpected keys in %s", where, len(missing), len(unexpected), path)


# --------------------------------------------------------------------------- named factories
def _model_options() -> list[inspect.Parameter]:
    """The spec options ctta itself takes (everything of `from_module` after `name`)."""
    params = list(inspect.signature(from_module).parameters.values())
    return [p for p in params if p.kind is p.KEYWORD_ONLY and p.name != "name"]


def _factory_backbone(name: str):
    """`module.path:factory` as a backbone factory: ctta's options plus the factory's own."""
    factory = import_object(name, f"backbone {name!r}")
    if factory is None:
        return None
    ours = _model_options()

    def build(**options: Any) -> Backbone:
        wrap = {p.name: options.pop(p.name) for p in ours if p.name in options}
        if "image_size" in parameters_of(factory):  # the factory may need the input size too (a ViT)
            options["image_size"] = wrap.get("image_size")
        net = call(factory, options, f"backbone {name!r}")
        backbone = net if isinstance(net, Backbone) else from_module(net, name=name, **wrap)
        weights = wrap.get("weights")
        backbone.weights_fingerprint = content_key(
            [file_fingerprint(weights) if weights else None, source_fingerprint(factory)]
        )
        return backbone

    build.__signature__ = options_signature(ours, factory)
    build.__doc__ = factory.__doc__
    return build


BACKBONES.resolve_unknown_with(
    _factory_backbone,
    "module.path:factory",
    "a Python callable returning a torch.nn.Module (importable: installed, on PYTHONPATH or in the "
    "current folder)",
)


# --------------------------------------------------------------------------- Python objects
_OBJECTS: dict[str, nn.Module] = {}


def object_spec(obj: Any) -> dict | None:
    """The spec of a torch.nn.Module given through the Python API, alone or as
    `{"model": module, **options}` (None for anything else). The name is
    `python:<ClassName>-<fingerprint of its weights>`, so a run's identity follows the weights;
    every run gets a deep copy, so adaptation never leaks from one run into the next."""
    if isinstance(obj, nn.Module):
        model, options = obj, {}
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), nn.Module):
        model, options = obj["model"], {k: v for k, v in obj.items() if k != "model"}
    else:
        return None
    if "name" in options:
        raise UserError("backbone: give either a name or a model object, not both")
    key = f"{type(model).__name__}-{module_fingerprint(model)[:12]}"
    _OBJECTS[key] = model
    return {"name": f"python:{key}", **options}


def module_fingerprint(model: nn.Module) -> str:
    """sha1 of the class and every parameter and buffer of `model`."""
    h = hashlib.sha1(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@register_backbone("python", family=True)
def _python_objects(key: str):
    """A torch.nn.Module passed through the Python API (see ctta.models.user.object_spec)."""
    if key not in _OBJECTS:
        raise UserError(
            f"backbone 'python:{key}' was a module object of another Python process; pass the object "
            f"again, or name a factory as module.path:callable (needed where runs start new processes)"
        )

    def build(**options: Any) -> Backbone:
        return from_module(copy.deepcopy(_OBJECTS[key]), name=f"python:{key}", **options)

    build.__signature__ = inspect.Signature(_model_options())
    return build
