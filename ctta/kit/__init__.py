"""The toolkit for plugin authors: everything a method, scenario or protocol file may import
besides `ctta` itself (the contract: `Method`, `Scenario`, `Protocol`, `Task`, `hp`,
`register_*`, `UserError`). The built-in `methods/`, `scenarios/` and `protocols/` import
nothing else from ctta, and an import contract checks it. Methods find here the one training
loop and its recipe, frozen-feature extraction, the cached source model, parameter selection,
backbone stages, the test-time bases, L2/EWC regularisation, adapters, CLIP prompts, class
statistics and augmentations; scenarios find data loading, class and sample pools, stream
building and corruptions; protocols find the disjointness checks.
"""

from ..core.config import as_dict
from ..core.errors import NoTrainingSplit, UserError, choices_error
from ..core.files import content_key
from ..core.seeding import derive_seed
from ..data.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, HELD_OUT, corrupt
from ..data.datasets import DataSpec, load_dataset
from ..data.images import ImageData, check_trained_classes, iterate
from ..data.released import CLEAN, Release, release_of
from ..data.splits import POOLS, class_pool, per_class, sample_pool
from ..data.transforms import TRANSFORM_SYNTAX, check_transform, transformed_domains
from .adapters import (
    AdaptedBlock,
    Adapter,
    AdapterRecipe,
    adapter_parameters,
    add_adapter,
    insert_adapters,
    mean_adapter,
    merge_toward,
    set_route,
)
from .augment import augmented_mean, batch_statistics_per_group, tta_augment
from .class_stats import GaussianClassStats, align_classifier
from .disjointness import compare, scored_data, stream_shape
from .features import extract_features
from .heads import PrototypeHead
from .params import (
    freeze,
    named_matching,
    norm_affine_parameters,
    norm_layers,
    timm_named_parameters,
    train_only,
    use_batch_statistics,
)
from .prompts import PromptTuning, encode_image, encode_text
from .regularization import ParameterRegularizer, RegularizedFinetuning, TrainingFisher, fisher_diagonal
from .source import cached_training, recompute_batchnorm_statistics, source_model
from .stages import (
    StageOutput,
    Stages,
    add_stage_hooks,
    backbone_stages,
    find_stages,
    lower_norm_layers,
    lower_norm_parameters,
    probe_stages,
    stage_modules,
)
from .streams import (
    DEBUG_GLYPH_DOMAINS,
    ORDERS,
    StreamOptions,
    batches_of,
    class_order,
    class_proportions,
    class_stream,
    class_tasks,
    domain_order,
    domain_stream,
    source_data,
    source_recipe,
    stream_info,
    stream_order,
    test_time_info,
    zipf_subsample,
)
from .test_time import NormAdaptationMethod, TestTimeMethod, norm_adaptation_optimizer, softmax_entropy
from .training import NonFiniteLoss, Optimizer, Recipe, cross_entropy_on, fit, fit_task, make_optimizer

__all__ = [
    # methods: training
    "NonFiniteLoss",
    "Optimizer",
    "Recipe",
    "cross_entropy_on",
    "fit",
    "fit_task",
    "make_optimizer",
    "extract_features",
    "cached_training",
    "recompute_batchnorm_statistics",
    "source_model",
    # methods: which parameters train
    "freeze",
    "named_matching",
    "norm_affine_parameters",
    "norm_layers",
    "timm_named_parameters",
    "train_only",
    "use_batch_statistics",
    "StageOutput",
    "Stages",
    "add_stage_hooks",
    "backbone_stages",
    "find_stages",
    "lower_norm_layers",
    "lower_norm_parameters",
    "probe_stages",
    "stage_modules",
    # methods: test-time bases
    "NormAdaptationMethod",
    "TestTimeMethod",
    "norm_adaptation_optimizer",
    "softmax_entropy",
    "tta_augment",
    "augmented_mean",
    "batch_statistics_per_group",
    # methods: continual-learning pieces
    "ParameterRegularizer",
    "RegularizedFinetuning",
    "TrainingFisher",
    "fisher_diagonal",
    "AdaptedBlock",
    "Adapter",
    "AdapterRecipe",
    "adapter_parameters",
    "add_adapter",
    "insert_adapters",
    "mean_adapter",
    "merge_toward",
    "set_route",
    "PromptTuning",
    "encode_image",
    "encode_text",
    "GaussianClassStats",
    "align_classifier",
    "PrototypeHead",
    # scenarios: data and streams
    "DataSpec",
    "ImageData",
    "check_trained_classes",
    "iterate",
    "load_dataset",
    "POOLS",
    "class_pool",
    "per_class",
    "sample_pool",
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "HELD_OUT",
    "corrupt",
    "CLEAN",
    "NoTrainingSplit",
    "Release",
    "release_of",
    "TRANSFORM_SYNTAX",
    "check_transform",
    "transformed_domains",
    "DEBUG_GLYPH_DOMAINS",
    "ORDERS",
    "StreamOptions",
    "batches_of",
    "class_order",
    "class_proportions",
    "class_stream",
    "class_tasks",
    "domain_order",
    "domain_stream",
    "source_data",
    "source_recipe",
    "stream_info",
    "stream_order",
    "test_time_info",
    "zipf_subsample",
    # protocols: separation checks
    "compare",
    "scored_data",
    "stream_shape",
    # everyone
    "UserError",
    "as_dict",
    "choices_error",
    "content_key",
    "derive_seed",
]
