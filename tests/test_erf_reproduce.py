"""``spikescope erf reproduce``: checkpoint lookup by released file name, argument errors, and a tiny full run."""
import pytest

from spikescope.cli import main
from spikescope.erf.reproduce import PANELS, find_checkpoint, reproduce


def test_find_checkpoint_by_released_name(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "sd_former_v1_8_384.pth.tar").write_bytes(b"x")
    (tmp_path / "V3_5.1M_1x4.pth").write_bytes(b"x")
    (tmp_path / "sdtv3_s_splash_blr5e-4").mkdir()
    (tmp_path / "sdtv3_s_splash_blr5e-4" / "checkpoint-199.pth").write_bytes(b"x")
    assert find_checkpoint(tmp_path, "sdt_v1_8_384").name == "sd_former_v1_8_384.pth.tar"
    assert find_checkpoint(tmp_path, "sdt_v3_s:mixer=conv").name == "V3_5.1M_1x4.pth"
    assert find_checkpoint(tmp_path, "sdt_v3_s:mixer=srb").parent.name == "sdtv3_s_splash_blr5e-4"
    assert find_checkpoint(tmp_path, "qkformer_10_384") is None
    assert find_checkpoint(None, "qkformer_10_384") is None
    with pytest.raises(FileNotFoundError, match="--weights"):
        find_checkpoint(tmp_path / "missing", "sdt_v1_8_384")


def test_reproduce_refuses_unknown_panels(tmp_path):
    with pytest.raises(ValueError, match="dynamic"):
        reproduce(tmp_path, panels=["spatial", "figure9"])
    with pytest.raises(SystemExit) as e:
        main(["erf", "reproduce", "--out", str(tmp_path), "--panels", "figure9"])
    assert e.value.code == 2


@pytest.mark.slow
def test_reproduce_izhikevich_panel_report(tmp_path):
    report = reproduce(tmp_path, n=2, panels=["izhikevich"], progress=False)
    text = report.read_text()
    assert "## Izhikevich neuron" in text and "izhikevich/curve.png" in text
    assert (tmp_path / "izhikevich" / "curve.png").exists()


@pytest.mark.slow
def test_reproduce_every_panel_at_tiny_n(tmp_path):
    assert main(["erf", "reproduce", "--out", str(tmp_path), "--n", "1", "--size", "32"]) == 0
    text = (tmp_path / "report.md").read_text()
    for heading in ("Spatial ERF of the transformer SNNs", "ANN controls", "SDT-v3-S mixers per stage",
                    "Temporal ERF curves", "Spiking-CNN toy", "Izhikevich neuron", "Dynamic ERF"):
        assert heading in text
    assert "random weights + BN calibrated" in text
    for name in PANELS:
        assert (tmp_path / name).is_dir() or name == "ann"
    pngs = [line.split("(")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert pngs and all((tmp_path / p).exists() for p in pngs)
