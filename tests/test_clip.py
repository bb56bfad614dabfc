"""CLIP backbones and the prompted encoders, on real open_clip architectures with random weights."""

import open_clip
import pytest
import torch

from ctta import UserError, create_method
from ctta.api import StreamInfo
from ctta.kit.prompts import encode_image, encode_text
from ctta.models.clip import prompt_names
from ctta.models.factory import create_backbone


@pytest.fixture(scope="module")
def debug_clip():
    torch.manual_seed(0)
    return create_backbone("debug_clip").eval()


def info(names, size):
    return StreamInfo(
        kind="class_incremental",
        num_classes=len(names),
        class_names=tuple(names),
        image_size=size,
        seed=0,
        device=torch.device("cpu"),
        num_tasks=1,
    )


def test_clip_backbones_expose_text_side_and_capability(debug_clip):
    assert "clip" in debug_clip.capabilities()
    assert "clip" not in create_backbone("debug_vit").capabilities()
    assert debug_clip.image_size == 16 and debug_clip.feature_dim == 32
    text = debug_clip.text_features(["digit zero", "digit one", "latin capital letter a"])
    assert text.shape == (3, 32) and torch.allclose(text.norm(dim=-1), torch.ones(3))
    assert debug_clip.features(torch.rand(2, 3, 16, 16)).shape == (2, 32)
    assert 0 < debug_clip.logit_scale.item() <= 100
    with pytest.raises(UserError, match="needs a backbone with clip"):
        type(create_method("clip_zeroshot")).check_compatible(create_backbone("debug_vit"), info(["a"], 16))


def test_open_clip_family_names_and_tags_are_checked():
    with pytest.raises(UserError, match="unknown open_clip model 'ViT-B-61'.*ViT-B-16"):
        create_backbone("open_clip:ViT-B-61")
    with pytest.raises(UserError, match="neither a tag.*openai"):
        create_backbone({"name": "open_clip:ViT-B-16", "pretrained": "no-such-tag"})
    assert "ctta-tiny-clip" in open_clip.list_models()  # registered through open_clip's own mechanism


def test_class_names_become_words():
    assert prompt_names(["001.Black_footed_Albatross", "n01440764", "aquarium_fish", "digit one"]) == [
        "Black footed Albatross",
        "tench",
        "aquarium fish",
        "digit one",
    ]


def test_zero_shot_text_matches_open_clips_own_classifier(debug_clip):
    names, templates = ["digit zero", "digit one", "pound sign"], ("the {}", "a picture of the {}")
    ours = debug_clip.text_features(names, templates)
    theirs = open_clip.build_zero_shot_classifier(
        debug_clip.clip, debug_clip.tokenizer, names, [t.format for t in templates], use_tqdm=False
    )
    assert torch.allclose(ours, theirs.T, atol=1e-5)


def test_encoders_without_prompts_are_open_clips(debug_clip):
    tokens = debug_clip.tokenize(["the latin capital letter a in bold", "the digit one"])
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(
            encode_text(debug_clip.clip, tokens), debug_clip.clip.encode_text(tokens), atol=1e-5
        )
        image = encode_image(debug_clip.clip.visual, debug_clip.normalize(x))
        assert torch.allclose(image, debug_clip.features(x), atol=1e-6)


def test_text_prompts_take_the_place_of_words(debug_clip):
    """Prompts equal to the embeddings of "the picture of" give the embedding of the full sentence:
    insertion after the start token, positions and end-of-text pooling are right."""
    clip = debug_clip.clip
    words = debug_clip.tokenize(["the picture of"])[0]
    ctx = clip.token_embedding(words[1:4])
    with torch.no_grad():
        prompted = encode_text(clip, debug_clip.tokenize(["digit one", "pound sign"]), [ctx])
        full = clip.encode_text(
            debug_clip.tokenize(["the picture of digit one", "the picture of pound sign"])
        )
    assert torch.allclose(prompted, full, atol=1e-5)


def test_deep_prompts_replace_text_and_accumulate_in_vision(debug_clip):
    clip = debug_clip.clip
    seen = {"text": [], "vision": []}
    hooks = [
        block.register_forward_pre_hook(lambda m, args, kw, k=k: seen[k].append(args[0]), with_kwargs=True)
        for k, tower in (("text", clip.transformer), ("vision", clip.visual.transformer))
        for block in tower.resblocks
    ]
    text_prompts = [torch.randn(2, 32) for _ in range(2)]
    vision_prompts = [torch.randn(2, 32) for _ in range(2)]
    try:
        with torch.no_grad():
            encode_text(clip, debug_clip.tokenize(["digit one"]), text_prompts)
            encode_image(clip.visual, torch.rand(1, 3, 16, 16), vision_prompts, accumulate=True)
            encode_image(clip.visual, torch.rand(1, 3, 16, 16), vision_prompts, accumulate=False)
    finally:
        for h in hooks:
            h.remove()
    text, vision = seen["text"], seen["vision"]
    assert torch.equal(text[1][0, 1:3], text_prompts[1])  # replaced after the start token
    assert text[0].shape[1] == text[1].shape[1]
    patches = 1 + 16
    assert [v.shape[1] for v in vision] == [patches + 2, patches + 4, patches + 2, patches + 2]
    assert torch.equal(vision[1][0, -2:], vision_prompts[1])
    assert not torch.equal(vision[1][0, -4:-2], vision_prompts[0])  # block 0's outputs were kept


def test_cpe_clip_forward_backward_on_vit_b16():
    """The real ViT-B-16 shape (random weights): 12 layers of 2 text prompts and accumulating
    visual prompts, a batch of 2 images, gradients reach every prompt and nothing else."""
    torch.manual_seed(0)
    backbone = create_backbone("open_clip:ViT-B-16")
    method = create_method("cpe_clip")
    method.attach(backbone, info(["tench", "goldfish", "great white shark"], 224))
    assert method.g.shape == (12, 2, 512) and method.proj.weight.shape == (768, 512)
    lengths = []
    hooks = [
        b.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
        for b in backbone.clip.visual.transformer.resblocks
    ]
    logits = method.logits(torch.rand(2, 3, 224, 224), [0, 1, 2])
    for h in hooks:
        h.remove()
    assert lengths == [197 + 2 * (i + 1) for i in range(12)]
    assert logits.shape == (2, 3)
    logits.logsumexp(1).sum().backward()
    assert (method.g.grad.abs().sum(dim=(1, 2)) > 0).all()  # every layer's prompts are used
    assert method.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
    assert method.trainable_parameters() == 12 * 2 * 512 + 512 * 768 + 768
