import pytest
import torch
from torch import nn

from spikescope.layers.time import SeqToBatch, TBatchNorm2d, TConv2d, TimeSharedDropout, TMaxPool2d


def test_tconv_equals_per_timestep_conv():
    conv = TConv2d(3, 5, 3, padding=1)
    x = torch.randn(4, 2, 3, 8, 8)
    y = conv(x)
    ref = torch.stack([nn.Conv2d.forward(conv, x[t]) for t in range(4)])
    torch.testing.assert_close(y, ref)
    assert set(conv.state_dict()) == {"weight", "bias"}


def test_tbatchnorm_uses_folded_batch_statistics():
    bn = TBatchNorm2d(3)
    x = torch.randn(4, 2, 3, 5, 5) * 3 + 1
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.1 * x.mean(dim=(0, 1, 3, 4)), rtol=1e-5, atol=1e-6)


def test_seq_to_batch_and_pool():
    x = torch.randn(3, 2, 4, 8, 8)
    assert SeqToBatch(nn.Conv2d(4, 6, 1))(x).shape == (3, 2, 6, 8, 8)
    assert TMaxPool2d(2)(x).shape == (3, 2, 4, 4, 4)


def test_time_folded_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"expected \[T, B, ...\] with 5 dims"):
        TConv2d(3, 3, 1)(torch.randn(2, 3, 8, 8))


def test_time_shared_dropout_mask_is_shared_over_time():
    d = TimeSharedDropout(0.5)
    y = d(torch.ones(6, 4, 10))
    assert torch.equal(y[0], y[5])
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(d.eval()(torch.ones(2, 3)), torch.ones(2, 3))
