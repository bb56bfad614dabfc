"""ctta: continual learning and test-time adaptation benchmarks on pretrained models."""
