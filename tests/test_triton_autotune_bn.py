"""Autotuned launch configurations, PLIF's in-launch decay-gradient reduction and the fused BN + integer spike.

Like tests/test_triton_kernels.py these run the kernels natively on CUDA, else in the Triton interpreter on CPU
tensors (tests/conftest.py sets ``TRITON_INTERPRET=1``), where the autotuner keeps one configuration unless a test
forces another with ``set_launch_configs``.
"""
import pytest
import torch
from torch import nn

from spikescope.neurons import PLIF, ATan, IntegerSpike, Sigmoid
from spikescope.neurons.integer import BNIntegerSpike, fuse_bn_integer_spike
from spikescope.neurons.kernels.reference import lif_reference
from spikescope.neurons.params import LIFParams

pytest.importorskip("triton")
from spikescope.neurons.kernels import triton_integer, triton_lif  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
CONFIG_IDS = [f"{c.kwargs['BLOCK']}x{c.num_warps}" for c in triton_lif.GPU_CONFIGS]


@pytest.fixture()
def kernels():
    """The kernel modules (skip unless they can run here); every launch-config change is undone afterwards."""
    if DEV == "cpu" and not triton_lif.INTERPRETED:
        pytest.skip("no CUDA and the kernels were not imported under TRITON_INTERPRET=1")
    yield triton_lif, triton_integer
    triton_lif.set_launch_configs(None)


def _grads(fn, x, k, p):
    xb = x.clone().requires_grad_(True)
    kb = k.clone().requires_grad_(True) if isinstance(k, torch.Tensor) else k
    s, v = fn(xb, kb, p, True)
    gen = torch.Generator().manual_seed(3)
    ((s * torch.randn(s.shape, generator=gen).to(s)).sum() + (v * 0.1).sum()).backward()
    return s.detach(), xb.grad, (kb.grad if isinstance(kb, torch.Tensor) else None)


def test_n_bucket_is_the_next_power_of_two():
    assert [triton_lif.n_bucket(n) for n in (1, 2, 3, 1000, 1024, 1025, 600_000)] == [1, 2, 4, 1024, 1024, 2048,
                                                                                      1 << 20]


def test_set_launch_configs_rejects_a_config_without_block(kernels):
    import triton

    with pytest.raises(ValueError, match="BLOCK"):
        triton_lif.set_launch_configs([triton.Config({"SIZE": 128}, num_warps=4)])
    with pytest.raises(ValueError, match="BLOCK"):
        triton_lif.set_launch_configs([])


def test_autotune_key_is_the_n_bucket_and_the_dtypes(kernels, monkeypatch):
    """With the GPU set, the autotuner times the configurations once per (N bucket, dtypes, stored tensors) and
    reuses its choice for every N of the bucket (timings faked: the interpreter has no clock worth tuning on)."""
    lif = kernels[0]
    lif.set_launch_configs(list(lif.GPU_CONFIGS))
    tuner = lif._lif_fwd_kernel
    timed = []

    def fake_bench(*args, config, **kwargs):  # pretend 512 x 2 is the fastest
        timed.append(config)
        t = 1.0 if (config.kwargs["BLOCK"], config.num_warps) == (512, 2) else 2.0
        return [t, t, t]

    monkeypatch.setattr(tuner, "_bench", fake_bench)
    p = LIFParams(0.6, 0.0, True, False, ATan(2.0))
    with torch.no_grad():
        for n, dtype in ((700, torch.float32), (1000, torch.float32), (1100, torch.float32), (700, torch.bfloat16)):
            x = (torch.randn(3, n) * 1.5).to(DEV, dtype)
            assert torch.equal(lif.lif_triton(x, 0.5, p)[0], lif_reference(x, 0.5, p)[0])
            assert (tuner.best_config.kwargs["BLOCK"], tuner.best_config.num_warps) == (512, 2)
    buckets = sorted((key[0], key[-1]) for key in tuner.cache)  # (n_bucket, ..., dtype of the last tensor arg)
    assert buckets == [(1024, "torch.bfloat16"), (1024, "torch.float32"), (2048, "torch.float32")]
    assert len(timed) == 3 * len(lif.GPU_CONFIGS)  # 700 and 1000 share the 1024 bucket: timed once


@pytest.mark.parametrize("config", triton_lif.GPU_CONFIGS, ids=CONFIG_IDS)
def test_every_config_gives_the_same_spikes(kernels, config):
    """Forced to each configuration of the GPU set, the kernels give spikes bit-identical to the reference on an
    input that spans several programs with a tail, and the same gradients."""
    lif, integer = kernels
    lif.set_launch_configs([config])
    x = torch.randn(3, 2, 700, device=DEV) * 1.5
    p = LIFParams(0.6, 0.0, True, False, Sigmoid(4.0))
    for k in (0.5, torch.tensor(0.45, device=DEV)):
        ref, got = _grads(lif_reference, x, k, p), _grads(lif.lif_triton, x, k, p)
        assert torch.equal(ref[0], got[0])
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5)
        if ref[2] is not None:
            torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-5)
    xi = x * 2 + 1
    assert torch.equal(integer.integer_spike_triton(xi, 4.0, 4.0), IntegerSpike(4, backend="torch")(xi))
    scale, shift = torch.rand(2, device=DEV) + 0.5, torch.randn(2, device=DEV)
    x4 = xi.reshape(3, 2, 2, 350)
    expect = IntegerSpike(4, backend="torch")(x4 * scale[:, None] + shift[:, None])
    assert torch.equal(integer.bn_integer_spike_triton(x4, scale, shift, 4.0, 4.0), expect)


def test_plif_decay_gradient_over_more_programs_than_a_block_is_deterministic(kernels):
    """BLOCK 16 and 400 neurons: 25 programs, so the last program adds the partials in two chunks; dL/dk
    matches the reference, repeats bit for bit, and the ticket is left at zero for the next launch."""
    import triton

    lif = kernels[0]
    lif.set_launch_configs([triton.Config({"BLOCK": 16}, num_warps=1)])
    x = torch.randn(2, 400, device=DEV) * 1.5
    k = torch.tensor(0.4, device=DEV)
    p = LIFParams(0.6, 0.0, True, False, ATan(2.0))
    got = [_grads(lif.lif_triton, x, k, p)[2] for _ in range(2)]
    ref = _grads(lif_reference, x.double(), k.double(), p)[2]
    assert got[0].shape == k.shape and got[0].dtype == k.dtype
    assert torch.equal(got[0], got[1])
    torch.testing.assert_close(got[0].double(), ref, rtol=1e-5, atol=1e-4)
    assert all(int(t.item()) == 0 for t in lif._TICKETS.values())


def test_plif_module_decay_gradient_in_bfloat16_parameter(kernels):
    """A bfloat16 decay (a PLIF cast with .to(bfloat16)) gets its gradient in bfloat16, from the same launch."""
    n = PLIF(init_tau=2.0, v_threshold=0.6, surrogate=ATan(2.0), backend="triton").to(DEV, torch.bfloat16)
    x = (torch.randn(4, 3, 50, device=DEV) * 1.5).to(torch.bfloat16)
    n(x).float().sum().backward()
    assert n.w.grad.dtype == torch.bfloat16 and torch.isfinite(n.w.grad).all() and n.w.grad.abs() > 0


# ---------------------------------------------------------------------------------- fused BN + integer spike


def _bn(c, dims=2):
    bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c).to(DEV).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.3, 2.0)
        bn.weight.uniform_(0.5, 3.0)
        bn.bias.uniform_(-1.0, 2.0)
    return bn


def _unfused(bn, spike, x):
    return spike(bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))


SHAPES = [(2, 3, 5, 7, 7), (1, 2, 3, 11), (3, 1, 6), (2, 2, 4, 1, 13)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("norm", [None, 1.0], ids=["normD", "norm1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_bn_integer_spike_is_the_folded_affine_then_the_spike(kernels, shape, norm, dtype):
    """The fused kernel equals IntegerSpike(x * scale + shift) with the module's float32 scale and shift, the
    affine rounded to the input dtype (two float32 roundings, no FMA): bit-identical, odd shapes included; and it
    equals BN followed by IntegerSpike except for elements whose BN output lies within rounding of a half-integer."""
    c = shape[2]
    bn = _bn(c, dims=2 if len(shape) == 5 else 1)
    fused = BNIntegerSpike(bn, IntegerSpike(4, norm, backend="triton")).eval()
    x = (torch.randn(*shape, device=DEV) * 2 + 0.5).to(dtype)
    with torch.no_grad():
        got = fused(x)
        view = (1, 1, c) + (1,) * (x.dim() - 3)
        y = (x.float() * fused.scale.view(view) + fused.shift.view(view)).to(dtype)
        assert torch.equal(got, IntegerSpike(4, norm, backend="torch")(y))
        ref = _unfused(bn, IntegerSpike(4, norm, backend="torch"), x)
        y_bn = bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]).float()
    assert got.dtype == dtype and got.shape == x.shape
    differ = got != ref
    near_tie = ((y_bn.clamp(0, 4) - y_bn.clamp(0, 4).floor() - 0.5).abs() < 4 * torch.finfo(dtype).eps)
    assert not (differ & ~near_tie).any()
    assert ((got - ref).abs()[differ] <= 1 / fused.spike.norm + 1e-6).all()


def test_bn_integer_spike_falls_back_to_the_unfused_pair(kernels, monkeypatch):
    """Training mode, autograd, or a CPU tensor with backend 'auto' run spike(bn(x)) exactly (running statistics
    and gradients included); the fused kernel is not called there."""
    calls = []
    monkeypatch.setattr("spikescope.neurons.integer.bn_integer_spike_triton",
                        lambda *a: calls.append(1) or triton_integer.bn_integer_spike_triton(*a))
    bn, bn2 = _bn(4), _bn(4)
    bn2.load_state_dict(bn.state_dict())
    fused = BNIntegerSpike(bn, IntegerSpike(4, backend="triton"))
    x = torch.randn(2, 3, 4, 5, 5, device=DEV) * 2
    fused.train()
    bn2.train()
    assert torch.equal(fused(x), _unfused(bn2, IntegerSpike(4, backend="torch"), x))
    torch.testing.assert_close(bn.running_mean, bn2.running_mean, rtol=0, atol=0)
    fused.eval()
    bn2.eval()
    xg = x.clone().requires_grad_(True)
    fused(xg).sum().backward()
    assert xg.grad is not None and bn.weight.grad is not None and not calls
    if DEV == "cpu":
        auto = BNIntegerSpike(bn, IntegerSpike(4)).eval()
        with torch.no_grad():
            assert torch.equal(auto(x), _unfused(bn2, IntegerSpike(4, backend="torch"), x))
        assert not calls
    with torch.no_grad():
        fused(x)
    assert calls == [1]


def test_bn_integer_spike_refolds_when_the_bn_changes(kernels):
    bn = _bn(3)
    fused = BNIntegerSpike(bn, IntegerSpike(4, backend="triton")).eval()
    x = torch.randn(2, 2, 3, 4, 4, device=DEV) * 2
    with torch.no_grad():
        fused(x)
        bn.running_mean.add_(0.7)  # e.g. a load_state_dict after fusing
        got = fused(x)
    expect = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(fused.shift, expect.detach(), rtol=1e-6, atol=1e-6)
    assert (got != _unfused(bn, IntegerSpike(4, backend="torch"), x)).float().mean() < 0.01


def test_bn_integer_spike_rejects_a_bn_without_running_statistics():
    with pytest.raises(ValueError, match="running statistics"):
        BNIntegerSpike(nn.BatchNorm2d(3, track_running_stats=False), IntegerSpike(4))
    with pytest.raises(ValueError, match="IntegerSpike"):
        BNIntegerSpike(nn.BatchNorm2d(3), nn.ReLU())


class _TwoPairs(nn.Module):
    """BN1 -> spike only (fusable); BN2 -> spike and a residual add (not fusable)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1, self.sp1 = _bn(4), IntegerSpike(4, backend="triton")
        self.bn2, self.sp2 = _bn(4), IntegerSpike(4, backend="triton")

    def forward(self, x):
        y = self.conv(x.flatten(0, 1))
        a = self.sp1(self.bn1(y).unflatten(0, x.shape[:2]))
        z = self.bn2(y).unflatten(0, x.shape[:2])
        return a + self.sp2(z) + z


def test_fuse_finds_only_the_bn_read_by_the_spike_alone(kernels):
    model = _TwoPairs().to(DEV).eval()
    x = torch.randn(2, 2, 3, 6, 6, device=DEV)
    with torch.no_grad():
        ref = model(x)
    assert fuse_bn_integer_spike(model, x) == ["sp1"]
    assert isinstance(model.bn1, nn.Identity) and isinstance(model.sp1, BNIntegerSpike)
    assert isinstance(model.bn2, nn.BatchNorm2d) and isinstance(model.sp2, IntegerSpike)
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    with pytest.raises(ValueError, match="model.eval"):
        fuse_bn_integer_spike(model.train(), x)


def test_fuse_a_time_first_batch_norm(kernels):
    """A BN that takes [T, B, C, H, W] itself (TBatchNorm2d) is fused as time_first, with the same spikes."""
    from spikescope.layers.time import TBatchNorm2d

    bn = TBatchNorm2d(4).to(DEV).eval()
    with torch.no_grad():
        bn.running_var.uniform_(0.3, 2.0)
        bn.bias.uniform_(0.0, 2.0)
    model = nn.Sequential(bn, IntegerSpike(4, backend="triton")).eval()
    x = torch.randn(2, 3, 4, 5, 5, device=DEV) * 2
    with torch.no_grad():
        ref = model(x)
    assert fuse_bn_integer_spike(model, x) == ["1"]
    assert model[1].time_first and isinstance(model[0], nn.Identity)
    with torch.no_grad():
        got = model(x)
    assert (got != ref).float().mean() < 0.01


def test_fuse_sdt_v3_for_inference(kernels):
    """A tiny SDT-v3: every BN read by a spike alone (inside the separable convs, the attention's q/k/v, the MLP)
    is fused and the logits are unchanged; the BNs of the residual stream stay."""
    from spikescope.models.registry import create_model

    model = create_model("sdt_v3_s", embed_dims=[8, 16, 16, 16], num_classes=10).to(DEV).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 1.5)
        if isinstance(m, IntegerSpike):
            m.backend = "triton"
    x = torch.randn(2, 3, 32, 32, device=DEV)
    with torch.no_grad():
        ref = model(x)
    spikes = sum(isinstance(m, IntegerSpike) for m in model.modules())
    fused = fuse_bn_integer_spike(model, x)
    assert 0 < len(fused) < spikes and "stage3.blocks.0.attn.sn_q" in fused
    assert sum(isinstance(m, BNIntegerSpike) for m in model.modules()) == len(fused)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- native kernels on a CUDA device (skipped without)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_autotuned_plif_reduces_the_decay_gradient_in_one_launch(dtype):
    """A late-stage-sized PLIF layer (1.6 M neurons per step) under the real autotuner: spikes bit-identical, the
    decay gradient of the in-launch reduction within float32 summation error, a configuration from the GPU set."""
    x = (torch.randn(4, 32, 256, 14, 14, device="cuda") * 1.5).to(dtype)
    k = torch.tensor(0.4, device="cuda")
    p = LIFParams(0.6, 0.0, True, False, ATan(2.0))
    ref, got = _grads(lif_reference, x, k, p), _grads(triton_lif.lif_triton, x, k, p)
    assert torch.equal(ref[0], got[0])
    tol = dict(rtol=1e-3, atol=1e-2) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-2 * x.numel() ** 0.5)
    torch.testing.assert_close(got[2], ref[2], **tol)
    assert triton_lif._lif_bwd_kernel.best_config in triton_lif.GPU_CONFIGS
    assert all(int(t.item()) == 0 for t in triton_lif._TICKETS.values())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_bn_integer_spike_against_the_unfused_pair(dtype):
    bn = _bn(256)
    fused = BNIntegerSpike(bn, IntegerSpike(4)).eval()
    x = (torch.randn(4, 32, 256, 14, 14, device="cuda") * 2).to(dtype)
    with torch.no_grad():
        got = fused(x)
        ref = _unfused(bn, IntegerSpike(4), x)
        y_bn = bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]).float().clamp(0, 4)
    near_tie = (y_bn - y_bn.floor() - 0.5).abs() < 4 * torch.finfo(dtype).eps
    assert got.dtype == dtype and not ((got != ref) & ~near_tie).any()
