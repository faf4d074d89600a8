"""bn_then_spike equals neuron(bn(x)) in values, running statistics, gradients and hooks."""
import copy

import pytest
import torch

from spikescope.layers.bn_spike import bn_then_spike
from spikescope.layers.time import TBatchNorm2d
from spikescope.neurons import LIF


@pytest.mark.parametrize("autocast", [False, True])
def test_equals_plain_composition(autocast):
    bn, lif = TBatchNorm2d(6), LIF(tau=2.0, detach_reset=True)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 3.0)
        bn.bias.uniform_(-0.5, 1.0)
    bn2, lif2 = copy.deepcopy(bn), copy.deepcopy(lif)
    calls = []
    lif.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.randn(5, 3, 6, 4, 4, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(5, 3, 6, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = bn_then_spike(x, bn, lif)
        y2 = lif2(bn2(x2))
    (y.float() * g).sum().backward()
    (y2.float() * g).sum().backward()
    assert 0.05 < y.float().mean() < 0.95
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(bn.weight.grad, bn2.weight.grad)
    torch.testing.assert_close(bn.bias.grad, bn2.bias.grad)
    torch.testing.assert_close(bn.running_mean, bn2.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, bn2.running_var, rtol=0, atol=0)
    assert bn.num_batches_tracked == 1 and calls == [torch.Size([5, 3, 6, 4, 4])]


def test_keeps_no_membrane_for_backward():
    bn, lif = TBatchNorm2d(6), LIF(tau=2.0)
    x = torch.randn(5, 3, 6, 4, 4, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        bn_then_spike(x, bn, lif)
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0] is x
