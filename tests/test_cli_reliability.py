"""One-line errors at the CLI boundary, and checkpoints that rebuild the model they were trained as."""
import pytest
import torch
from _train_helpers import tiny_demo_recipe
from torch.utils.data import DataLoader, Dataset

from spikescope.cli import _one_line, main
from spikescope.data.events import EventFileError
from spikescope.models import checkpoint_options, create_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch sma_vgg8_dvs128 run with non-default widths (the options only its checkpoint knows)."""
    tmp = tmp_path_factory.mktemp("trained")
    path = tiny_demo_recipe(tmp, epochs=1)
    assert main(["train", "--config", str(path)]) == 0
    return path, tmp / "runs" / "tiny"


def test_training_checkpoint_rebuilds_its_model(trained, capsys, tmp_path):
    _, run = trained
    assert main(["analyze", "--model", "sma_vgg8_dvs128", "--checkpoint", str(run / "best.pt"), "--size", "32",
                 "--batch", "1"]) == 0
    assert "shape mismatch" not in capsys.readouterr().out
    assert main(["heatmap", "--model", "sma_vgg8_dvs128", "--checkpoint", str(run / "best.pt"), "--layer",
                 "block2.lif", "--out", str(tmp_path / "h"), "--input", str(_sample(tmp_path))]) == 0
    assert "loaded 137 tensors" in capsys.readouterr().out
    assert main(["analyze", "--model", "sma_vgg8_cifar10dvs", "--checkpoint", str(run / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert "trained as sma_vgg8_dvs128" in err and "--model sma_vgg8_dvs128" in err
    opts = checkpoint_options("sma_vgg8_dvs128", {"drop_rate": 0.0}, run / "last.pt")
    assert opts["widths"] == [4, 4, 4, 4, 4] and opts["drop_rate"] == 0.0


def _sample(tmp_path):
    path = tmp_path / "x.pt"
    torch.save(torch.rand(4, 2, 32, 32), path)
    return path


def test_second_train_refused_then_overwrite(trained, capsys):
    path, run = trained
    assert main(["train", "--config", str(path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "best.pt").is_file()


def test_truncated_last_pt_and_bad_yaml_are_one_line(trained, tmp_path, capsys):
    path, run = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])
    assert main(["train", "--config", str(path), "--resume", "--set", f"train.out_dir={tmp_path}",
                 "--set", "train.run_name=broken"]) == 2
    assert "truncated" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: x\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and len(err.strip().splitlines()) == 2  # the error and the traceback hint


def test_analyze_batch_zero_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--model", "toy_convnet", "--batch", "0"])
    assert exit_.value.code == 2 and "must be >= 1" in capsys.readouterr().err


class _Corrupt(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise EventFileError("/data/x.aedat: truncated packet at byte 12")


def test_worker_traceback_unwrapped_to_the_file_and_reason():
    with pytest.raises(EventFileError) as err:
        next(iter(DataLoader(_Corrupt(), num_workers=1)))
    assert "Original Traceback" in str(err.value)
    assert _one_line(err.value) == "/data/x.aedat: truncated packet at byte 12"


def test_model_boundary_checks():
    import numpy as np

    model = create_model("toy_convnet").eval()
    x = torch.randn(1, *_toy_size())
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/inf values"):
        model(x)
    model.check_inputs = False
    model(x)
    assert create_model("toy_convnet", check_inputs=False).check_inputs is False
    with pytest.raises(TypeError, match="numpy.ndarray.*torch.as_tensor"):
        model(np.zeros((1, *_toy_size()), dtype=np.float32))
    with pytest.raises(TypeError, match="num_classes='ten' must be int"):
        create_model("sdt_v3_t", num_classes="ten")


def _toy_size():
    from spikescope.models import model_info

    return model_info("toy_convnet").input_size
