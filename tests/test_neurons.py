"""The multi-step neurons: every backend against the reference loop, gradchecks, PLIF, IntegerSpike, errors."""
import itertools
import math

import pytest
import torch

from spikescope.neurons import LIF, PLIF, ATan, IntegerSpike, Rectangle, Sigmoid, Triangle
from spikescope.neurons.kernels import BACKENDS, run_lif
from spikescope.neurons.params import LIFParams

SURROGATES = [ATan(2.0), Sigmoid(4.0), Rectangle(1.0), Triangle(1.0)]
COMBOS = list(itertools.product([0.0, -0.3, None], [True, False], [True, False], SURROGATES))


def _params(v_reset, decay_input, detach_reset, surrogate, v_threshold=0.6):
    return LIFParams(v_threshold, v_reset, decay_input, detach_reset, surrogate)


@pytest.mark.parametrize("backend", ["fused", "cpu"])
@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS, ids=str)
def test_fused_matches_reference(v_reset, decay_input, detach_reset, surrogate, backend):
    p = _params(v_reset, decay_input, detach_reset, surrogate)
    x = torch.randn(6, 3, 5, 7) * 1.5
    outs = {}
    for name in ("torch", backend):
        xb = x.clone().requires_grad_(True)
        s, v = run_lif(xb, 1 / 1.7, p, name, return_state=True)
        torch.manual_seed(1)
        gs, gv = torch.randn_like(s), torch.randn_like(v) * 0.1
        ((s * gs).sum() + (v * gv).sum()).backward()
        outs[name] = (s.detach(), v.detach(), xb.grad)
    assert outs["torch"][0].sum() > 0, "the test input should make the neuron fire"
    assert torch.equal(outs["torch"][0], outs[backend][0])
    torch.testing.assert_close(outs["torch"][1], outs[backend][1], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs["torch"][2], outs[backend][2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["fused", "cpu"])
@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS, ids=str)
def test_plif_fused_matches_reference(v_reset, decay_input, detach_reset, surrogate, backend):
    x = torch.randn(5, 4, 6) * 1.5
    grads = {}
    for name in ("torch", backend):
        n = PLIF(init_tau=1.8, v_threshold=0.6, v_reset=v_reset, decay_input=decay_input,
                 detach_reset=detach_reset, surrogate=surrogate, backend=name)
        xb = x.clone().requires_grad_(True)
        s = n(xb)
        torch.manual_seed(2)
        (s * torch.randn_like(s)).sum().backward()
        grads[name] = (s.detach(), xb.grad, n.w.grad)
    assert torch.equal(grads["torch"][0], grads[backend][0])
    torch.testing.assert_close(grads["torch"][1], grads[backend][1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads["torch"][2], grads[backend][2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("v_reset,decay_input", [(0.0, True), (0.2, False), (None, True), (None, False)])
def test_membrane_gradcheck_float64(backend, v_reset, decay_input):
    # With detach_reset the membrane trace V is piecewise smooth in X and k (spikes are locally constant), so its
    # true derivative is what autograd must return: gradcheck against finite differences, PLIF decay included.
    p = _params(v_reset, decay_input, True, Sigmoid(4.0), v_threshold=1.0)
    x = torch.randn(5, 2, 3, dtype=torch.float64) * 1.5
    k = torch.tensor(0.4, dtype=torch.float64)
    s, _ = run_lif(x, k, p, "torch")
    assert 0 < s.sum() < s.numel(), "the test input should make some neurons fire"
    x.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: run_lif(a, b, p, backend, True)[1], (x, k), eps=1e-7, atol=1e-6)


def test_plif_decay_gradient_finite_difference():
    torch.manual_seed(3)
    x = (torch.randn(6, 3, 4, dtype=torch.float64) * 1.2)
    n = PLIF(init_tau=2.2, v_threshold=1.0, detach_reset=True, surrogate=Sigmoid(4.0), backend="fused").double()
    weights = torch.randn(6, 3, 4, dtype=torch.float64)

    def loss():
        _, v = n(x, return_state=True)  # with a detached reset, V is smooth in w between spike flips
        return (v * weights).sum()

    loss().backward()
    analytic = n.w.grad.item()
    eps = 1e-6
    with torch.no_grad():
        n.w += eps
        up = loss().item()
        n.w -= 2 * eps
        down = loss().item()
        n.w += eps
    assert math.isclose(analytic, (up - down) / (2 * eps), rel_tol=1e-4, abs_tol=1e-7)


def test_lif_closed_form_below_threshold():
    # Below threshold V[t] = sum_k k(1-k)^(t-j) X[j]; dV[T-1]/dX[j] = k (1-k)^(T-1-j).
    tau, T = 3.0, 6
    n = LIF(tau=tau, v_threshold=100.0)
    x = torch.rand(T, 1, requires_grad=True)
    s, v = n(x, return_state=True)
    assert s.sum() == 0
    v[-1].sum().backward()
    k = 1 / tau
    expected = torch.tensor([k * (1 - k) ** (T - 1 - j) for j in range(T)]).unsqueeze(1)
    torch.testing.assert_close(x.grad, expected)


def test_lif_spike_and_reset_by_hand():
    n = LIF(tau=2.0, v_threshold=1.0, v_reset=0.0)
    x = torch.tensor([[1.5], [1.5], [3.0], [0.0]])
    s, v = n(x, return_state=True)
    # H0 = 0.75 (no spike), H1 = 0.75 + (1.5 - 0.75)/2 = 1.125 (spike, V=0), H2 = 1.5 (spike), H3 = 0
    assert s.squeeze().tolist() == [0.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(v.squeeze(), torch.tensor([0.75, 0.0, 0.0, 0.0]))
    soft = LIF(tau=2.0, v_threshold=1.0, v_reset=None)
    s, v = soft(x, return_state=True)
    assert s.squeeze().tolist() == [0.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(v.squeeze(), torch.tensor([0.75, 0.125, 0.5625, 0.28125]))


def test_surrogate_formulas():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    cases = {
        ATan(2.0): lambda u: 1.0 / (1 + (math.pi * u) ** 2),
        Sigmoid(4.0): lambda u: 4 * torch.sigmoid(4 * u) * (1 - torch.sigmoid(4 * u)),
        Rectangle(2.0): lambda u: 2.0 * (u.abs() < 0.25).float(),
        Triangle(2.0): lambda u: torch.clamp(2.0 - 4.0 * u.abs(), min=0),
    }
    for sg, formula in cases.items():
        x.grad = None
        y = sg(x)
        assert torch.equal(y.detach(), (x >= 0).float())
        y.sum().backward()
        torch.testing.assert_close(x.grad, formula(x.detach()))


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS[::3], ids=str)
def test_cpu_kernels_bfloat16_match_reference(v_reset, decay_input, detach_reset, surrogate):
    # bf16 in, float32 membrane: spikes and the bf16 membrane bit-identical, bf16 gradients within one rounding
    p = _params(v_reset, decay_input, detach_reset, surrogate)
    x = (torch.randn(7, 3, 33) * 1.5).bfloat16()
    outs = {}
    for backend in ("torch", "cpu"):
        xb = x.clone().requires_grad_(True)
        s, v = run_lif(xb, 1 / 1.7, p, backend, return_state=True)
        torch.manual_seed(1)
        ((s.float() * torch.randn(s.shape)).sum() + (v.float() * torch.randn(v.shape)).sum() * 0.1).backward()
        outs[backend] = (s.detach(), v.detach(), xb.grad)
    assert outs["cpu"][0].dtype == torch.bfloat16
    assert torch.equal(outs["torch"][0], outs["cpu"][0])
    assert torch.equal(outs["torch"][1], outs["cpu"][1])
    torch.testing.assert_close(outs["torch"][2].float(), outs["cpu"][2].float(), rtol=8e-3, atol=1e-6)


@pytest.mark.parametrize("stream", [False, True], ids=["direct", "streaming"])
@pytest.mark.parametrize("T", [17, 37, 64])
def test_cpu_kernels_long_sequence_multi_chunk(monkeypatch, T, stream):
    # More steps than one 16-step pass (the membrane and dL/dV carried between passes; passes ending in single
    # steps at T = 17 and 37) and more neurons than one 128-wide chunk (with a ragged tail), the membrane returned:
    # the same spikes and membranes, gradients and PLIF's decay gradient within 1e-6
    from spikescope.neurons.kernels import cpu

    monkeypatch.setattr(cpu, "STREAM_MIN_BYTES", 0 if stream else 1 << 62)
    x = torch.randn(T, 2500) * 1.5
    outs = {}
    for backend in ("torch", "cpu"):
        xb = x.clone().requires_grad_(True)
        n = PLIF(init_tau=1.8, surrogate=Sigmoid(4.0), backend=backend)
        s, v = n(xb, return_state=True)
        ((s * torch.linspace(-1, 1, 2500)).sum() + (v * torch.linspace(1, -1, 2500)).sum() * 0.1).backward()
        outs[backend] = (s.detach(), v.detach(), xb.grad, n.w.grad)
    assert torch.equal(outs["torch"][0], outs["cpu"][0])
    assert torch.equal(outs["torch"][1], outs["cpu"][1])
    torch.testing.assert_close(outs["torch"][2], outs["cpu"][2], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outs["torch"][3], outs["cpu"][3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("surrogate,detach_reset,learn", [(Sigmoid(4.0), False, True), (ATan(2.0), False, False),
                                                          (Rectangle(1.0), True, False)], ids=str)
def test_cpu_streaming_stores_write_what_direct_stores_write(monkeypatch, dtype, surrogate, detach_reset, learn):
    # Calls larger than the last-level cache write through stage arrays with non-temporal stores. Forced on for
    # every call: T = 6 (one unrolled trip and tail steps), 1001 neurons (rows not 32-byte aligned, ragged chunk),
    # the membrane returned, H or the uint8 codes saved, PLIF's decay gradient: bit-identical to direct stores.
    from spikescope.neurons.kernels import cpu

    x = (torch.randn(6, 7, 143) * 1.5).to(dtype)
    gs, gv = torch.randn(x.shape).to(dtype), (torch.randn(x.shape) * 0.1).to(dtype)
    outs = {}
    for limit in (0, 1 << 62):
        monkeypatch.setattr(cpu, "STREAM_MIN_BYTES", limit)
        k = torch.tensor(0.6, requires_grad=True) if learn else 1 / 1.7
        xb = x.clone().requires_grad_(True)
        s, v = run_lif(xb, k, _params(0.0, True, detach_reset, surrogate), "cpu", return_state=True)
        ((s.float() * gs.float()).sum() + (v.float() * gv.float()).sum()).backward()
        outs[limit] = (s, v, xb.grad, k.grad if learn else None)
    streamed, direct = outs.values()
    assert streamed[0].sum() > 0
    for a, b in zip(streamed[:3], direct[:3]):
        assert torch.equal(a, b)
    if learn:
        torch.testing.assert_close(streamed[3], direct[3], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("surrogate", [Sigmoid(4.0), ATan(2.0)], ids=str)
def test_cpu_kernels_propagate_nan_like_the_reference(surrogate):
    # a NaN input must leave a NaN gradient where the reference has one (the trainer's non-finite check relies on
    # it), also through the vectorised surrogate
    x = torch.randn(4, 64) * 1.5
    x[1, 5] = float("nan")
    grads = {}
    for backend in ("torch", "cpu"):
        xb = x.clone().requires_grad_(True)
        LIF(surrogate=surrogate, backend=backend)(xb).sum().backward()
        grads[backend] = xb.grad
    finite = ~grads["torch"].isnan()
    assert not finite.all()
    assert torch.equal(finite, ~grads["cpu"].isnan())
    torch.testing.assert_close(grads["torch"][finite], grads["cpu"][finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("surrogate,exact", [
    (Sigmoid(4.0), lambda u: 4 * torch.sigmoid(4 * u) * torch.sigmoid(-4 * u)),
    (ATan(2.0), lambda u: 1 / (1 + (math.pi * u) ** 2)),
], ids=["sigmoid", "atan"])
def test_cpu_surrogate_gradient_against_float64(surrogate, exact):
    # one step, V[-1] = 0, k = 1/2: dL/dX = sg'(X / 2 - 1) / 2 with dL/dS = 1. The vectorised exp and reciprocal of
    # the backward against the formula in float64, over the whole range (both tails, 200001 points)
    x = torch.linspace(-60, 60, 200001).reshape(1, -1).requires_grad_(True)
    LIF(tau=2.0, v_threshold=1.0, surrogate=surrogate, backend="cpu")(x).sum().backward()
    ref = exact(x.detach().double() / 2 - 1) / 2
    assert (x.grad.double() - ref).abs().max() < 5e-7


@pytest.mark.parametrize("T", [3, 20])  # 20: two passes, each thread carrying its own neurons' state
def test_cpu_kernels_threads_split_neurons(T):
    x = torch.randn(T, 4, 2**16 + 77) * 1.5  # more than one range per thread
    torch.set_num_threads(2)
    try:
        xb = x.clone().requires_grad_(True)
        s = PLIF(backend="cpu")(xb)
        s.sum().backward()
    finally:
        torch.set_num_threads(1)
    xr = x.clone().requires_grad_(True)
    ref = PLIF(backend="torch")
    sr = ref(xr)
    sr.sum().backward()
    assert torch.equal(s, sr)
    torch.testing.assert_close(xb.grad, xr.grad, rtol=1e-6, atol=1e-6)


def test_cpu_buffer_pool_never_hands_out_a_live_buffer():
    # 2 MiB steps: the buffers come from the pool. A retained graph keeps its saved H alive, so a second forward
    # must not overwrite it, and the second backward through the retained graph still gives the first gradient.
    x = torch.randn(2, 512, 1024) * 1.5
    n = LIF(surrogate=Sigmoid(4.0), backend="cpu")
    xa = x.clone().requires_grad_(True)
    sa = n(xa)
    sa.sum().backward(retain_graph=True)
    first = xa.grad.clone()
    xb = (x * 0.5).requires_grad_(True)
    sb = n(xb)
    assert sb.data_ptr() != sa.data_ptr()
    sb.sum().backward()
    xa.grad = None
    sa.sum().backward()
    assert torch.equal(xa.grad, first)
    del sa, sb, xa, xb
    again = n(x)  # everything released: the pool serves it
    assert torch.equal(again, LIF(surrogate=Sigmoid(4.0), backend="torch")(x))


def test_cpu_no_grad_keeps_nothing_and_auto_picks_cpu():
    from spikescope.neurons.kernels import cpu, resolve_backend

    x = torch.randn(4, 3, 5)
    assert resolve_backend("auto", x) == ("cpu" if cpu.compiler() else "fused")
    with torch.no_grad():
        assert torch.equal(LIF(backend="cpu")(x), LIF(backend="torch")(x))


@pytest.mark.parametrize("stream", [False, True], ids=["direct", "streaming"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("max_value,norm", [(4, None), (4, 1.0), (3, 3.0), (4, 2.5)])
def test_integer_spike_cpu_kernel_matches_torch(monkeypatch, dtype, max_value, norm, stream):
    from spikescope.neurons.kernels import cpu

    monkeypatch.setattr(cpu, "STREAM_MIN_BYTES", 0 if stream else 1 << 62)  # streaming: non-temporal stores
    x = (torch.randn(5, 3, 117) * 3).to(dtype)  # 1755 elements: a ragged chunk, unaligned ends
    x[0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, float("nan")])  # ties round to even, NaN stays NaN
    res = {}
    for backend in ("torch", "cpu"):
        xb = x.clone().requires_grad_(True)
        s = IntegerSpike(max_value, norm, backend=backend)(xb)
        torch.manual_seed(0)
        (s * torch.randn(s.shape).to(dtype)).nan_to_num().sum().backward()
        res[backend] = (s.detach(), xb.grad)
    assert torch.equal(res["torch"][0].nan_to_num(-1), res["cpu"][0].nan_to_num(-1))
    assert torch.equal(res["torch"][1].nan_to_num(-1), res["cpu"][1].nan_to_num(-1))


def test_reference_backward_is_linear_in_t():
    # unbind, not x[t]: the backward of 64 steps builds no [T, ...] zero tensor per step (that was O(T^2))
    x = torch.randn(64, 8, requires_grad=True)
    s, _ = run_lif(x, 0.5, _params(0.0, True, False, Sigmoid(4.0)), "torch")
    names, stack = set(), [s.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and fn.name() not in names | {"UnbindBackward0"}:
            names.add(fn.name())
            stack.extend(f for f, _ in fn.next_functions)
    assert "SelectBackward0" not in names


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_runs_in_float32(dtype):
    x = torch.randn(4, 8, 8) * 2
    ref = LIF(backend="torch")(x)
    out = LIF(backend="fused")(x.to(dtype))
    assert out.dtype == dtype
    assert (out.float() != ref).float().mean() < 0.02  # only rounding of the input itself may flip spikes


def test_fused_saves_less_for_backward():
    x = torch.randn(8, 64, 256, requires_grad=True)

    def saved_bytes(backend, surrogate):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            LIF(backend=backend, detach_reset=True, surrogate=surrogate)(x)
        return total

    ref, fused = saved_bytes("torch", ATan()), saved_bytes("fused", ATan())
    assert fused <= x.numel() * 4 < ref
    assert saved_bytes("fused", Rectangle()) == x.numel()  # one uint8 code per element
    assert saved_bytes("cpu", ATan()) == fused
    assert saved_bytes("cpu", Rectangle()) == x.numel()


def test_integer_spike_forward_backward():
    x = torch.tensor([-1.0, 0.0, 0.4, 0.6, 2.5, 3.49, 4.0, 4.2, 7.0], requires_grad=True)
    n = IntegerSpike(max_value=4)
    s = n(x.unsqueeze(1)).squeeze(1)
    expected = torch.round(torch.clamp(x.detach(), 0, 4)) / 4
    assert torch.equal(s.detach(), expected)
    s.sum().backward()
    inside = ((x.detach() >= 0) & (x.detach() <= 4)).float()
    torch.testing.assert_close(x.grad, inside / 4)
    head = IntegerSpike(max_value=4, norm=1)
    assert head(torch.tensor([[2.6]])).item() == 3.0


def test_return_state_shapes_and_integer_state():
    x = torch.randn(3, 2, 4, 5, 5)
    s, v = LIF()(x, return_state=True)
    assert s.shape == v.shape == x.shape
    s, u = IntegerSpike()(x, return_state=True)
    assert u is x


@pytest.mark.parametrize(
    "make,inp,err,match",
    [
        (lambda: LIF(), torch.randn(5), ValueError, "at least 2 dims"),
        (lambda: LIF(), torch.ones(3, 2, dtype=torch.long), TypeError, "floating-point"),
        (lambda: IntegerSpike(), torch.randn(5), ValueError, "at least 2 dims"),
        (lambda: LIF(backend="cuda-magic"), torch.randn(2, 2), ValueError, "unknown backend"),
    ],
)
def test_bad_inputs(make, inp, err, match):
    with pytest.raises(err, match=match):
        make()(inp)


def test_bad_construction():
    with pytest.raises(ValueError, match="tau must be > 1"):
        LIF(tau=1.0)
    with pytest.raises(ValueError, match="init_tau must be > 1"):
        PLIF(init_tau=0.5)
    with pytest.raises(ValueError, match="unknown surrogate"):
        LIF(surrogate="erf")
    assert LIF(surrogate="rectangle").params.surrogate == Rectangle(1.0)


def test_backends_listed():
    assert {"torch", "fused", "cpu", "compile"} <= set(BACKENDS)


def test_cpu_stream_threshold_reads_the_caches_from_sysfs(tmp_path, monkeypatch):
    # the last-level cache capped at 16 x L2: a 480 MiB shared L3 with 2 MiB L2 streams from 32 MiB, an 8 MiB L3
    # with 512 KiB L2 from 8 MiB; unknown sizes read as 0 and fall back to 8 MiB
    from spikescope.neurons.kernels import cpu

    def caches(root, entries):
        for i, (level, kind, size) in enumerate(entries):
            d = root / f"index{i}"
            d.mkdir(parents=True)
            (d / "level").write_text(f"{level}\n")
            (d / "type").write_text(f"{kind}\n")
            (d / "size").write_text(f"{size}\n")
        return root

    server = caches(tmp_path / "server", [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"),
                                          (3, "Unified", "491520K")])
    assert [cpu._cache_bytes(level, server) for level in (1, 2, 3, 4)] == [48 << 10, 2 << 20, 480 << 20, 0]
    assert cpu._cache_bytes(2, caches(tmp_path / "broken", [(2, "Unified", "lots")])) == 0
    zen1 = caches(tmp_path / "zen1", [(2, "Unified", "512K"), (3, "Unified", "8M")])
    read = cpu._cache_bytes
    for root, threshold in [(server, 32 << 20), (zen1, 8 << 20), (tmp_path / "absent", 8 << 20)]:
        monkeypatch.setattr(cpu, "_cache_bytes", lambda level, r=root: read(level, r))
        cpu.stream_threshold.cache_clear()
        assert cpu.stream_threshold() == threshold
    cpu.stream_threshold.cache_clear()
