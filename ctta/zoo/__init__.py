"""The offline backbones: the tiny ViT and tiny CLIP that stand in for ImageNet- and
web-pretrained models, the small BatchNorm CNN, the random debug backbones for tests, and
`ctta pretrain`, which trains the tiny ones on glyph material no benchmark scores. Built on
`ctta.models` and the training loop of `ctta.kit`."""
