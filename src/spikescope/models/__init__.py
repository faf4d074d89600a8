"""Model families, the registry and checkpoint loading."""
from .calibrate import bn_is_default, calibrate_bn
from .checkpoints import (
    CheckpointError,
    LoadReport,
    checkpoint_options,
    convert_checkpoint,
    load_checkpoint,
    read_state_dict,
    save_checkpoint_atomic,
    trained_model,
)
from .registry import (
    ModelInfo,
    UnknownModelError,
    apply_overrides,
    count_parameters,
    create_model,
    example_input,
    list_models,
    model_info,
    parse_overrides,
    register_model,
    split_options,
)

__all__ = [
    "bn_is_default",
    "calibrate_bn",
    "CheckpointError",
    "LoadReport",
    "ModelInfo",
    "UnknownModelError",
    "apply_overrides",
    "checkpoint_options",
    "convert_checkpoint",
    "count_parameters",
    "create_model",
    "example_input",
    "list_models",
    "load_checkpoint",
    "model_info",
    "parse_overrides",
    "split_options",
    "read_state_dict",
    "register_model",
    "save_checkpoint_atomic",
    "trained_model",
]
