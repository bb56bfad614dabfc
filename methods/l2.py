"""L2: fine-tuning with an isotropic quadratic pull towards anchor weights.

Smith, Tian, Halbe, Hsu, Kira: "A Closer Look at Rehearsal-Free Continual Learning" (CVPR
Workshops 2023). The loss on task t is the cross-entropy over the classes seen so far plus

    lam/2 * sum_i (theta_i - theta*_i)^2

over the filtered parameters (default `blocks.*.attn.*`: the self-attention weights of the
ViT's blocks, the placement Smith et al. found strongest on ImageNet-R), where theta* are
the weights after the previous task (`anchor: previous`; before task 0 the pretrained
weights) or the pretrained weights (`anchor: pretrained`). By default only the filtered
parameters and the classifier head train (`train: filtered`); `train: all` fine-tunes the
whole backbone with only the filtered parameters regularised. The factor 1/2 is part of
lam (Avalanche-style penalties `lam * sum ...` need twice our lam for the same pull).
"""

from __future__ import annotations

from ctta import register_method
from ctta.kit import RegularizedFinetuning


@register_method("l2")
class L2(RegularizedFinetuning):
    """Fine-tuning with an L2 pull towards the previous (or pretrained) weights (Smith et al. 2023)."""
