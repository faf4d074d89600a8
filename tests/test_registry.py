import re

import pytest
import torch

from spikescope.cli import main
from spikescope.models import (
    CheckpointError,
    UnknownModelError,
    count_parameters,
    create_model,
    example_input,
    list_models,
    load_checkpoint,
    model_info,
    save_checkpoint_atomic,
)


def test_unknown_model_lists_close_names():
    with pytest.raises(UnknownModelError, match="toy_convnet"):
        create_model("toy_convnett")


def test_unknown_override_names_the_options():
    with pytest.raises(TypeError, match="unknown option.*'depht'.*depth"):
        create_model("toy_convnet", depht=3)


def test_create_list_count():
    assert "toy_convnet" in list_models("toy_*")
    model = create_model("toy_convnet", depth=2, channels=4, in_channels=1)
    assert count_parameters("toy_convnet", depth=2, channels=4) == sum(p.numel() for p in model.parameters()) == 180
    x = example_input("toy_convnet", batch=2)
    assert model(x).shape == (4, 2, 4, 64, 64)


def test_checkpoint_roundtrip_with_wrappers_and_prefixes(tmp_path):
    src = create_model("toy_convnet", depth=2, channels=3)
    path = tmp_path / "ckpt.pth"
    save_checkpoint_atomic({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = create_model("toy_convnet", depth=2, channels=3)
    report = load_checkpoint(dst, path)
    assert report.complete and len(report.loaded) == 2
    for a, b in zip(src.parameters(), dst.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_mismatch_is_reported_by_name(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(create_model("toy_convnet", depth=3, channels=3).state_dict(), path)
    dst = create_model("toy_convnet", depth=2, channels=5)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(dst, path)
    msg = str(info.value)
    assert "convs.2.weight" in msg and "shape mismatch convs.0.weight" in msg and "strict=False" in msg
    report = load_checkpoint(dst, path, strict=False)
    assert report.unexpected == ["convs.2.weight"] and len(report.mismatched) == 2


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(create_model("toy_convnet"), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(create_model("toy_convnet"), tmp_path / "missing.pth")


def test_cli_models(capsys):
    assert main(["models", "toy_*"]) == 0
    out = capsys.readouterr().out
    assert "toy_convnet" in out and "[B,1,64,64]" in out
    assert main(["models", "nothing_*"]) == 2  # as for every bad input


def test_cli_models_lists_every_mixer_variant_with_its_count(capsys):
    assert main(["models", "sdt_v3_s"]) == 0
    out = capsys.readouterr().out
    for row in ("mixer=conv", "5.106M", "mixer=mlpixer", "4.498M", "mixer=srb", "4.801M"):
        assert row in out


@pytest.mark.parametrize("name", ["sdt_v3_t", "meta_spikeformer_15m", "spikformer_8_384", "sdt_v1_8_384",
                                  "qkformer_10_384", "sma_vgg8_dvs128", "ms_resnet18"])
@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 32, 32), (2, 1, 1, 1, 32, 32)], ids=str)
def test_wrong_input_shape_names_the_layout_and_the_callers_shape(name, shape):
    """Every family checks the input before repeating an image over T, so the error quotes what was passed."""
    model = create_model(name)
    with pytest.raises(ValueError, match=rf"expected .*\[T, B, {model_info(name).input_size[0]}, H, W\].*"
                                         rf"got shape {re.escape(str(shape))}"):
        model(torch.zeros(shape))
