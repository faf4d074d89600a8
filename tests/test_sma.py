"""SMA and Attention ZoneOut (docs/papers.md#sma-module) against loop implementations written here from the spec."""
import pytest
import torch

from spikescope.layers import SMA


def _sma(C=8, T=6, **kw):
    kw.setdefault("c_reduction", 2)
    kw.setdefault("t_reduction", 2)
    return SMA(C, T, **kw)


def _input(T=6, B=3, C=8, H=5, W=5):
    # real-valued conv-like input with enough drive to make the branches spike
    return (torch.randn(T, B, C, H, W) * 2 + 0.5).requires_grad_(True)


def _reference(sma: SMA, x: torch.Tensor) -> torch.Tensor:
    """The rule of docs/papers.md#attention-zoneout with plain Python loops (tensor version: reads the un-replaced P_n)."""
    spikes = sma.branch_spikes(x)
    alpha_t, alpha_c = sma.attention(spikes)
    N, T, B = alpha_t.shape
    C = alpha_c.shape[-1]
    P = [alpha_t[n][:, :, None, None, None] * alpha_c[n][..., None, None] * spikes[n] for n in range(N)]
    if not (sma.azo and sma.training):
        return sum(P)
    n_t, n_c = T // sma.rtr, C // sma.rcr
    out = []
    for n in range(N):
        replaced = P[n].clone()
        if n_t > 0 and n_c > 0:
            at = alpha_t[n].detach()
            ac = alpha_c[n].detach()
            score_t = [sum(float(at[t, b]) for b in range(B)) for t in range(T)]
            tau = sorted(range(T), key=lambda t: (score_t[t], t))[:n_t]  # lowest scores; ties -> lowest index
            if sma.variant == "full":
                score_c = [sum(float(ac[t, b, c]) for t in tau for b in range(B)) for c in range(C)]
            else:
                score_c = [sum(float(ac[0, b, c]) for b in range(B)) for c in range(C)]
            kappa = sorted(range(C), key=lambda c: (score_c[c], c))[:n_c]
            for t in tau:
                if t == 0:
                    continue
                for c in kappa:
                    replaced[t, :, c] = P[n][t - 1, :, c]
        out.append(replaced)
    return sum(out)


def _grads(sma, x, fn, g):
    x = x.detach().clone().requires_grad_(True)
    sma.zero_grad(set_to_none=True)
    y = fn(sma, x)
    (y * g).sum().backward()
    return y.detach(), x.grad, {k: p.grad.clone() for k, p in sma.named_parameters() if p.grad is not None}


def _compare(sma, x):
    sma.train()
    g = torch.randn(x.shape)
    y, gx, gp = _grads(sma, x, lambda m, v: m(v), g)
    y_ref, gx_ref, gp_ref = _grads(sma, x, _reference, g)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-6)
    assert gp.keys() == gp_ref.keys()
    for k in gp:
        torch.testing.assert_close(gp[k], gp_ref[k], rtol=1e-4, atol=1e-6, msg=k)
    return y


def test_parameter_counts_match_spec():
    # docs/papers.md#sma-module: r_c = r_t = 4, T = 16
    assert sum(p.numel() for p in SMA(128, 16, c_reduction=4, t_reduction=4).parameters()) == 1_399_204
    assert sum(p.numel() for p in SMA(256, 16, c_reduction=4, t_reduction=4).parameters()) == 5_591_492


@pytest.mark.parametrize("variant", ["full", "light"])
def test_scale_weights_sum_to_one(variant):
    sma = _sma(variant=variant)
    alpha_t, alpha_c = sma.attention(sma.branch_spikes(_input()))
    assert alpha_t.shape == (4, 6, 3)
    assert alpha_c.shape == ((4, 6, 3, 8) if variant == "full" else (4, 1, 3, 8))
    torch.testing.assert_close(alpha_t.sum(0), torch.ones(6, 3))
    torch.testing.assert_close(alpha_c.sum(0), torch.ones(alpha_c.shape[1:]))


@pytest.mark.parametrize(
    "T, rtr, rcr, variant, branch",
    [
        (4, 2, 4, "full", "lif"),
        (7, 3, 3, "full", "lif"),
        (10, 4, 2, "full", "lif"),
        (8, 2, 4, "full", "lif"),
        (7, 2, 4, "light", "lif"),
        (6, 2, 4, "full", "relu"),
    ],
)
def test_azo_matches_loop_reference(T, rtr, rcr, variant, branch):
    sma = _sma(T=T, azo=True, rtr=rtr, rcr=rcr, variant=variant, branch=branch)
    x = _input(T=T)
    y = _compare(sma, x)
    plain = _sma(T=T, azo=False, variant=variant, branch=branch)
    plain.load_state_dict(sma.state_dict())
    assert not torch.allclose(y, plain.train()(x)), "AZO should change the training-mode output here"


def _force_ties(sma: SMA, t_bias: torch.Tensor, c_bias: torch.Tensor) -> None:
    """Zero the attention weights so that alpha^T_n[t] / alpha^C_n[c] depend only on the given biases."""
    with torch.no_grad():
        for n, conv in enumerate(sma.T_after_attention_convs):
            conv.weight.zero_()
            conv.bias.copy_(t_bias[n])
        for n, conv in enumerate(sma.C_after_attention_convs):
            conv.weight.zero_()
            conv.bias.copy_(c_bias[n])


def test_azo_ties_go_to_lowest_index():
    T, C = 8, 8
    sma = _sma(T=T, C=C, azo=True, rtr=2, rcr=2)
    # all timesteps tie -> tau = {0, 1, 2, 3}; channels tie in pairs -> kappa = the lowest indices of each class
    pattern = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 1.0])
    c_bias = torch.stack([pattern * (n + 1) for n in range(4)])
    _force_ties(sma, torch.zeros(4, T), c_bias)
    x = _input(T=T, C=C)
    _compare(sma, x)
    alpha_t, alpha_c = sma.attention(sma.branch_spikes(x))
    mask = sma.zoneout_mask(alpha_t, alpha_c)
    assert mask[:, 0].sum() == 0
    assert mask[:, 1:4].all(-1).logical_not().all()  # exactly n_C of C channels, never all
    assert mask.any(-1)[:, 1:4].all() and not mask[:, 4:].any()
    assert (mask.sum(-1)[:, 1:4] == C // 2).all()


def test_azo_only_t0_selected_replaces_nothing():
    # every timestep ties and n_T = 1: tau_n = {0} for every scale -> nothing is replaced
    T = 5
    sma = _sma(T=T, azo=True, rtr=5, rcr=2)
    _force_ties(sma, torch.zeros(4, T), torch.randn(4, 8))
    x = _input(T=T)
    y = _compare(sma, x)
    plain = _sma(T=T, azo=False)
    plain.load_state_dict(sma.state_dict())
    torch.testing.assert_close(y, plain.train()(x.detach()), rtol=0, atol=0)


def test_azo_t0_strict_minimum_for_some_scales():
    # scales 0 and 1 have their (strict) minimum at t = 0 and n_T = 1: they replace nothing; scales 2, 3 do
    T = 6
    t_bias = torch.zeros(4, T)
    t_bias[0, 0] = t_bias[1, 0] = -3.0
    t_bias[2, 3] = t_bias[3, 3] = -3.0
    sma = _sma(T=T, azo=True, rtr=6, rcr=2)
    _force_ties(sma, t_bias, torch.randn(4, 8))
    x = _input(T=T)
    _compare(sma, x)
    mask = sma.zoneout_mask(*sma.attention(sma.branch_spikes(x)))
    assert not mask[:2].any() and mask[2:, 3].any()


@pytest.mark.parametrize("rtr, rcr", [(100, 2), (2, 100)])
def test_azo_zero_counts_replace_nothing(rtr, rcr):
    sma = _sma(azo=True, rtr=rtr, rcr=rcr).train()
    assert sma.zoneout_mask(*sma.attention(sma.branch_spikes(_input()))) is None
    _compare(sma, _input())


def test_eval_mode_is_unaffected_by_azo():
    x = _input()
    on = _sma(azo=True, rtr=2, rcr=2)
    off = _sma(azo=False)
    off.load_state_dict(on.state_dict())
    on.train()(x)  # update the running statistics once
    off.load_state_dict(on.state_dict())
    torch.testing.assert_close(on.eval()(x), off.eval()(x), rtol=0, atol=0)


def test_wrong_timesteps_is_a_clear_error():
    sma = _sma(T=6)
    with pytest.raises(ValueError, match=r"built for T=6 timesteps.*got T=4"):
        sma(torch.randn(4, 2, 8, 5, 5))
    with pytest.raises(ValueError, match="C=8"):
        sma(torch.randn(6, 2, 4, 5, 5))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="t_reduction"):
        SMA(32, 2, t_reduction=4)
    with pytest.raises(ValueError, match="odd"):
        SMA(32, 4, kernels=(1, 2))
    with pytest.raises(ValueError, match="branch"):
        SMA(32, 4, branch="gelu")


def test_relu_branch_keys_and_fractional_t_reduction():
    sma = SMA(16, 6, c_reduction=4, t_reduction=1.5, branch="relu")  # the ImageNet setting: 6 // 1.5 = 4
    assert sma.T_before_attention_conv.weight.shape == (4, 6, 1, 1, 1)
    assert "S_Convs.0.bn.bn.running_mean" in sma.state_dict()
    y = sma(torch.randn(6, 2, 16, 4, 4))
    assert y.shape == (6, 2, 16, 4, 4)


def test_sma_sees_every_timestep_in_eval():
    sma = _sma().eval()
    with torch.no_grad():
        sma.T_before_attention_conv.bias.fill_(1.0)  # an active ReLU: alpha^T depends on the descriptor
    x = _input().detach()
    x2 = x.clone()
    x2[4:] = torch.randn_like(x2[4:]) * 3
    y, y2 = sma(x), sma(x2)
    assert not torch.allclose(y[:4], y2[:4]), "the temporal attention mixes all timesteps: not causal"


@pytest.mark.parametrize("azo", [False, True])
def test_mixed_precision_step(azo):
    # under autocast the branch maps are bf16 and the weights float32: gradients keep each input's dtype
    sma = _sma(azo=azo, rtr=2, rcr=2).train()
    x = _input().detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sma(x)
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in sma.parameters())


@pytest.mark.gpu
def test_cuda_matches_cpu():
    sma = _sma(azo=True, rtr=2, rcr=2).train()
    x = _input().detach()
    g = torch.randn(x.shape)
    y, gx, gp = _grads(sma, x, lambda m, v: m(v), g)
    sma_cuda = sma.cuda()
    y_c, gx_c, gp_c = _grads(sma_cuda, x.cuda(), lambda m, v: m(v), g.cuda())
    torch.testing.assert_close(y_c.cpu(), y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx_c.cpu(), gx, rtol=1e-3, atol=1e-5)
    for k in gp:
        torch.testing.assert_close(gp_c[k].cpu(), gp[k], rtol=1e-3, atol=1e-5, msg=k)
