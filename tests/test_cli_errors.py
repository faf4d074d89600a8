"""Bad input on the command line ends with a one-line error naming the problem and exit code 2, not a traceback."""
import pytest

from spikescope.cli import main
from spikescope.erf import LayerError

CASES = {
    "unknown model": (["erf", "spatial", "--model", "no_such_net", "--out", "{tmp}/o"], "unknown model 'no_such_net'"),
    "unknown layer": (["erf", "spatial", "--model", "toy_convnet", "--layers", "nope", "--n", "2", "--out", "{tmp}/o"],
                      "layer 'nope' matches nothing"),
    "missing image folder": (["erf", "spatial", "--model", "toy_convnet", "--inputs", "{tmp}/none", "--out",
                              "{tmp}/o"], "neither 'noise' nor an existing image folder"),
    "unknown option": (["analyze", "--model", "toy_convnet", "--set", "widht=3"], "unknown option(s) ['widht']"),
    "malformed option": (["analyze", "--model", "toy_convnet", "--set", "width"], "expected key=value"),
    "missing checkpoint": (["heatmap", "--model", "toy_convnet", "--checkpoint", "{tmp}/w.pt", "--layer", "x",
                            "--out", "{tmp}/h"], "checkpoint file not found"),
    "missing config": (["train", "--config", "{tmp}/none.yaml"], "config file not found"),
    "missing eval checkpoint": (["eval", "--checkpoint", "{tmp}/best.pt"], "checkpoint file not found"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_errors_are_one_line_messages(case, tmp_path, capsys):
    argv, message = CASES[case]
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"spikescope {argv[0]}: error: ")


def test_traceback_on_request(monkeypatch):
    monkeypatch.setenv("SPIKESCOPE_TRACEBACK", "1")
    with pytest.raises(LayerError):
        main(["erf", "spatial", "--model", "toy_convnet", "--layers", "nope", "--n", "2", "--out", "unused"])


def test_programming_errors_still_raise(monkeypatch):
    import spikescope.cli as cli

    def broken(args):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(cli, "_cmd_models", broken)
    with pytest.raises(KeyError):
        main(["models"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the error is for machines without CUDA")
def test_cuda_device_without_cuda_is_a_clear_error(tmp_path, capsys):
    argv = ["erf", "spatial", "--model", "toy_convnet", "--device", "cuda", "--n", "2", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "no CUDA device" in capsys.readouterr().err
