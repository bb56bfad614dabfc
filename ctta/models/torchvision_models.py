"""torchvision classifiers as backbones: `torchvision:<model>` (any model of
`torchvision.models.list_models(module=torchvision.models)`), split into features and a linear
head like any network (`ctta.models.user.split_head`).

Weights are local, never downloaded: `weights=<file>` loads a checkpoint; `weights=<enum
name>` (`IMAGENET1K_V1`, `DEFAULT`, `ResNet50_Weights.IMAGENET1K_V2`) takes torchvision's
weights only when their file is already in the torch hub cache (`$TORCH_HOME/hub/checkpoints`),
and otherwise says where to put it. Input statistics and size default to those of the weights'
transforms (ImageNet's mean and std, 224 px for most).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import UserError, few
from ..core.files import content_key
from ..core.registry import register_backbone
from .backbone import Backbone, file_fingerprint, no_downloads
from .user import from_module


def hub_weights(model_name: str, weights: str, where: str | None = None, other: str = ""):
    """torchvision's weights enum member `weights` of `model_name` and its file in the torch hub
    cache; a UserError when the name is unknown or the file is not there (`other`: a further
    way to give the weights, for the message)."""
    import torch.hub
    from torchvision import models

    where = where or f"backbone 'torchvision:{model_name}'"
    enum = models.get_model_weights(model_name)
    member = weights.rpartition(".")[2]
    if member not in enum.__members__:
        raise UserError(
            f"{where}: weights={weights!r} is neither a file nor a weights name of {enum.__name__}; "
            f"valid choices: {', '.join(enum.__members__)}, or a checkpoint file"
        )
    entry = enum[member]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    if not path.is_file():
        raise UserError(
            f"{where}: weights {enum.__name__}.{entry.name} are not in the torch hub cache ({path}); ctta "
            f'downloads nothing: on a machine with network run `python -c "import torchvision; '
            f"torchvision.models.get_model('{model_name}', weights='{entry.name}')\"`, copy {path.name} to "
            f"{path.parent} here, {other or 'or pass weights=<checkpoint file>'}"
        )
    return entry, path


@register_backbone("torchvision", family=True)
def _torchvision_family(model_name: str):
    """Any torchvision classifier: torchvision:<model> (weights=<file>, or a weights name already in the torch hub cache)."""

    def build(
        weights: str | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize: str | None = None,
        head: str | None = None,
        trained_head: bool | None = None,
        strict: bool = True,
        weights_only: bool = True,
        stages: str | Sequence[str] | None = None,
        **model_kwargs: Any,
    ) -> Backbone:
        """A torchvision classifier. `weights=<file>` loads a local checkpoint (a state dict as
        `torch.save(model.state_dict())` writes it); `weights=IMAGENET1K_V1` (or another name
        of the model's weights enum) loads torchvision's weights from the torch hub cache.
        Options the model builder takes (`num_classes`, `dropout`, ...) go to it. The head
        counts as trained (`trained_head`) when weights are given; without weights ctta trains
        a source model where a scenario needs one."""
        from torchvision import models

        name = f"torchvision:{model_name}"
        known = models.list_models(module=models)
        if model_name not in known:
            close = [m for m in known if m[:4] == model_name[:4]] or known
            raise UserError(f"unknown torchvision classifier {model_name!r}; similar names: {few(close, 8)}")
        entry = path = None
        if weights is not None and not Path(weights).expanduser().is_file():
            if "/" in weights or Path(weights).suffix in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"):
                raise UserError(f"backbone {name!r}: weights file {weights} does not exist")
            entry, path = hub_weights(model_name, weights)
        with no_downloads(f"backbone {name!r}"):
            try:
                net = models.get_model(model_name, weights=entry, **model_kwargs)
            except ValueError as exc:  # e.g. num_classes that the named weights do not have
                raise UserError(f"backbone {name!r}: {exc}") from None
        if entry is not None:
            preset = entry.transforms()
            image_size = image_size or int(preset.crop_size[0])
            if mean is None and std is None and normalize is None:
                mean, std = list(preset.mean), list(preset.std)
        elif mean is None and std is None and normalize is None:
            normalize = "imagenet"  # every torchvision classifier is trained on ImageNet's statistics
        backbone = from_module(
            net,
            name=name,
            image_size=image_size or 224,
            mean=mean,
            std=std,
            normalize=normalize,
            head=head,
            trained_head=weights is not None if trained_head is None else trained_head,
            weights=None if entry is not None else weights,
            strict=strict,
            weights_only=weights_only,
            stages=stages,
        )
        if path is None and weights is not None:
            path = Path(weights).expanduser()
        backbone.weights_fingerprint = content_key(
            {"weights": file_fingerprint(path) if path is not None else None, "kwargs": model_kwargs}
        )
        return backbone

    return build
