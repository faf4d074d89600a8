"""The Triton kernels against the torch reference: natively on CUDA, else in the Triton interpreter on the CPU.

``@triton.jit`` decides when a kernel is defined whether it is compiled or interpreted, and ``triton.language``
itself must be imported in the same mode, so ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before anything
imports Triton when there is no CUDA device. The same tests then run the real kernels on a GPU machine (on ``cuda``
tensors) and the interpreted ones on a CPU machine (on ``cpu`` tensors, tiny shapes: the interpreter is slow).
"""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikescope.neurons import LIF, PLIF, ATan, IntegerSpike, Rectangle, Sigmoid, Triangle
from spikescope.neurons import kernels as K
from spikescope.neurons.kernels.reference import lif_reference
from spikescope.neurons.params import LIFParams

pytest.importorskip("triton")
from spikescope.neurons.kernels import triton_integer, triton_lif  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SURROGATES = [ATan(2.0), Sigmoid(4.0), Rectangle(1.0), Triangle(1.0)]
COMBOS = list(itertools.product([0.0, -0.3, None], [True, False], [True, False], SURROGATES))


@pytest.fixture(autouse=True, scope="module")
def _one_launch_config():
    """One configuration (1024x4) for these correctness tests: with the whole autotuning set every specialisation
    would compile and be timed 7 times on a GPU. tests/test_triton_autotune_bn.py tests the autotuning."""
    triton_lif.set_launch_configs([triton_lif.GPU_CONFIGS[3]])
    yield
    triton_lif.set_launch_configs(None)


@pytest.fixture(scope="module")
def interp():
    """The kernel modules, when they can run here (CUDA, or CPU tensors in the interpreter)."""
    if DEV == "cpu" and not triton_lif.INTERPRETED:
        pytest.skip("no CUDA and the kernels were not imported under TRITON_INTERPRET=1")
    return triton_lif, triton_integer


def _t(*shape, scale=1.0, shift=0.0, dtype=torch.float32):
    return (torch.randn(*shape) * scale + shift).to(device=DEV, dtype=dtype)


def _params(v_reset, decay_input, detach_reset, surrogate, v_threshold=0.6):
    return LIFParams(v_threshold, v_reset, decay_input, detach_reset, surrogate)


def _run(fn, x, k, p, grad_seed=1, v_scale=0.1):
    """Spikes, membrane, dL/dX and dL/dk (k a tensor) for L = <S, gS> + <V, gV>."""
    xb = x.clone().requires_grad_(True)
    kb = k.clone().requires_grad_(True) if isinstance(k, torch.Tensor) else k
    s, v = fn(xb, kb, p, True)
    gen = torch.Generator().manual_seed(grad_seed)
    gs = torch.randn(s.shape, generator=gen).to(s)
    gv = (torch.randn(v.shape, generator=gen) * v_scale).to(v)
    ((s.float() * gs.float()).sum() + (v.float() * gv.float()).sum()).backward()
    return s.detach(), v.detach(), xb.grad, (kb.grad if isinstance(kb, torch.Tensor) else None)


def _check_lif(lif_triton, x, k, p, grad_tol=1e-5):
    ref = _run(lif_reference, x, k, p)
    got = _run(lif_triton, x, k, p)
    assert 0 < ref[0].float().sum() < ref[0].numel(), "the test input should make some neurons fire"
    assert torch.equal(ref[0], got[0]), "spikes must be bit-identical"
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[2], ref[2], rtol=grad_tol, atol=grad_tol)
    if ref[3] is not None:
        torch.testing.assert_close(got[3], ref[3], rtol=grad_tol, atol=grad_tol)


def _combo_id(c):
    v_reset, decay_input, detach_reset, sur = c
    reset = "soft" if v_reset is None else f"hard{v_reset:g}"
    return f"{reset}-di{int(decay_input)}-dr{int(detach_reset)}-{sur.name}"


COMBO_IDS = [_combo_id(c) for c in COMBOS]


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS, ids=COMBO_IDS)
def test_lif_matches_reference(interp, v_reset, decay_input, detach_reset, surrogate):
    x = _t(5, 3, 7, scale=1.5)
    _check_lif(interp[0].lif_triton, x, 1 / 1.7, _params(v_reset, decay_input, detach_reset, surrogate))


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS, ids=COMBO_IDS)
def test_plif_matches_reference_including_decay_gradient(interp, v_reset, decay_input, detach_reset, surrogate):
    x = _t(5, 4, 6, scale=1.5)
    k = torch.tensor(-0.3, device=DEV).sigmoid()  # PLIF's decay sigmoid(w); the w gradient follows by the chain rule
    _check_lif(interp[0].lif_triton, x, k, _params(v_reset, decay_input, detach_reset, surrogate))


@pytest.mark.parametrize("shape", [(1, 9), (1, 2, 3, 5), (2, 1037), (3, 5, 7, 31), (64, 3)], ids=str)
@pytest.mark.parametrize("learn_decay", [False, True], ids=["LIF", "PLIF"])
def test_shapes_t1_odd_sizes_and_several_programs(interp, shape, learn_decay):
    lif = interp[0]
    blocks = [c.kwargs["BLOCK"] for c in lif.launch_configs()]
    assert min(blocks) < 1037 < 2 * min(blocks) or DEV == "cuda", "(2, 1037) should span two programs with a tail"
    x = _t(*shape, scale=1.5, shift=0.4)
    k = torch.tensor(0.45, device=DEV) if learn_decay else 0.5
    _check_lif(lif.lif_triton, x, k, _params(0.0, True, False, Sigmoid(4.0)))


def test_plif_module_w_gradient_through_kernel(interp):
    """PLIF's parameter gets the kernel's reduced decay gradient times sigmoid'(w)."""
    x = _t(4, 2, 700, scale=1.5)
    grads = []
    for fn in (lif_reference, interp[0].lif_triton):
        n = PLIF(init_tau=2.3, v_threshold=0.7, surrogate=ATan(2.0)).to(DEV)
        s, _ = fn(x, n.decay(), n.params, False)
        (s * torch.linspace(-1, 1, s.numel(), device=DEV).reshape(s.shape)).sum().backward()
        grads.append(n.w.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_gradient_from_spikes_only_and_from_membrane_only(interp):
    lif = interp[0]
    p = _params(0.0, True, False, ATan(2.0))
    x = _t(4, 50, scale=1.5)
    for pick in (0, 1):
        grads = []
        for fn in (lif_reference, lif.lif_triton):
            xb = x.clone().requires_grad_(True)
            out = fn(xb, 0.5, p, True)[pick]
            (out * torch.arange(out.numel(), dtype=out.dtype, device=DEV).reshape(out.shape).cos()).sum().backward()
            grads.append(xb.grad)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("learn_decay", [False, True], ids=["LIF", "PLIF"])
def test_half_inputs_in_interpreter(interp, dtype, learn_decay):
    """fp32 arithmetic on half inputs: spikes bit-identical; gradients within the half-precision saved U."""
    x = _t(6, 3, 40, scale=1.5, dtype=dtype)
    k = torch.tensor(0.4, device=DEV) if learn_decay else 1 / 1.7
    for p in (_params(0.0, True, False, Sigmoid(4.0)), _params(None, False, True, ATan(2.0))):
        ref = _run(lif_reference, x, k, p)
        got = _run(interp[0].lif_triton, x, k, p)
        assert got[0].dtype == dtype and got[2].dtype == dtype
        assert torch.equal(ref[0], got[0])
        # the interpreter truncates float32 -> bfloat16 (the GPU rounds to nearest even): allow one bfloat16 ulp
        torch.testing.assert_close(got[1].float(), ref[1].float(), rtol=2**-7, atol=0)
        torch.testing.assert_close(got[2].float(), ref[2].float(), rtol=2e-2, atol=2e-2)
        if learn_decay:  # PLIF keeps H in float32: the decay gradient is float32-accurate
            torch.testing.assert_close(got[3], ref[3], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("learn_decay", [False, True], ids=["LIF", "PLIF"])
def test_inference_without_grad(interp, learn_decay):
    """Under no_grad the kernel keeps nothing for backward and returns the same spikes and membrane."""
    x = _t(4, 3, 50, scale=1.5)
    k = torch.tensor(0.45, device=DEV, requires_grad=True) if learn_decay else 0.5
    p = _params(0.0, True, False, ATan(2.0))
    with torch.no_grad():
        got = interp[0].lif_triton(x, k, p, True)
    ref = lif_reference(x, k, p, True)
    assert not got[0].requires_grad
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1].detach())


def _saved_bytes(fn, x, k, p):
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.clone().requires_grad_(True), k, p, False)
    return sum(total)


@pytest.mark.parametrize(
    "dtype,p,learn_decay,per_element",
    [
        (torch.float32, _params(0.0, True, False, ATan(2.0)), False, 4),  # H in float32
        (torch.bfloat16, _params(0.0, True, False, ATan(2.0)), False, 2),  # U = H - V_th in bfloat16
        (torch.float32, _params(0.0, True, True, Rectangle(1.0)), False, 1),  # uint8 spike/window codes
        (torch.float32, _params(None, True, False, Rectangle(1.0)), False, 1),
        (torch.float32, _params(0.0, False, False, ATan(2.0)), True, 4),  # PLIF without decay_input: H only
        (torch.float32, _params(0.0, True, False, ATan(2.0)), True, 8),  # PLIF with decay_input: H and X
        (torch.bfloat16, _params(0.0, True, False, ATan(2.0)), True, 6),  # PLIF, half input: H in float32 and X
    ],
    ids=["fp32-H", "bf16-U", "rect-detach-codes", "rect-soft-codes", "plif-H", "plif-H+X", "plif-bf16-H32+X"],
)
def test_saved_for_backward(interp, dtype, p, learn_decay, per_element):
    x = _t(3, 100, dtype=dtype)
    k = torch.tensor(0.5, device=DEV, requires_grad=True) if learn_decay else 0.5
    extra = 4 if learn_decay else 0  # the 0-d decay tensor
    assert _saved_bytes(interp[0].lif_triton, x, k, p) == x.numel() * per_element + extra
    assert _saved_bytes(interp[0].lif_triton, x, k, p) < _saved_bytes(lif_reference, x, k, p)


def _integer_reference(x, max_value, norm):
    return IntegerSpike(max_value, norm, backend="torch")(x)


@pytest.mark.parametrize("max_value,norm", [(4, None), (4, 1.0), (8, 3.0)], ids=["D4", "D4-norm1", "D8-norm3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_integer_spike_matches_reference(interp, max_value, norm, dtype):
    ties = torch.arange(-1.5, max_value + 2.0, 0.5)  # round half to even at every .5
    x = torch.cat([ties, torch.randn(2 * 1100 - ties.numel()) * max_value / 2 + max_value / 2]).reshape(2, -1).to(DEV, dtype)
    n = float(max_value if norm is None else norm)
    outs = []
    for fn in (_integer_reference, lambda a, d, m: interp[1].integer_spike_triton(a, float(d), n)):
        xb = x.clone().requires_grad_(True)
        s = fn(xb, max_value, norm)
        (s.float() * torch.linspace(-2, 2, s.numel(), device=DEV).reshape(s.shape)).sum().backward()
        outs.append((s.detach(), xb.grad))
    assert outs[1][0].dtype == dtype
    if dtype == torch.bfloat16 and DEV == "cpu":  # the interpreter truncates float32 -> bfloat16 (GPU: nearest even)
        torch.testing.assert_close(outs[1][0].float(), outs[0][0].float(), rtol=2**-7, atol=0)
        torch.testing.assert_close(outs[1][1].float(), outs[0][1].float(), rtol=2**-7, atol=0)
    elif n not in (1.0, 4.0) and DEV == "cpu":  # x * (1/3) (the kernel, torch on CUDA) vs x / 3 (torch on CPU)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(outs[1][0], outs[0][0], rtol=eps, atol=0)
        torch.testing.assert_close(outs[1][1], outs[0][1], rtol=eps, atol=0)
    else:
        assert torch.equal(outs[0][0], outs[1][0])
        torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-6)


def test_triton_backend_on_cpu_tensor_is_a_clear_error():
    """Without the interpreter a CPU tensor is refused with a message that says what to do (fresh process)."""
    code = (
        "import torch\n"
        "from spikescope.neurons import LIF, IntegerSpike\n"
        "for n in (LIF(backend='triton'), IntegerSpike(backend='triton')):\n"
        "    try:\n"
        "        n(torch.randn(2, 3))\n"
        "    except RuntimeError as e:\n"
        "        assert 'needs a CUDA tensor' in str(e) and 'TRITON_INTERPRET=1' in str(e), e\n"
        "    else:\n"
        "        raise AssertionError('no error')\n"
        "print('ok')\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_backend_selection():
    assert "triton" in K.BACKENDS
    cpu_default = "cpu" if K.cpu.compiler() is not None else "fused"  # CPU tensors: the compiled C kernels
    assert K.resolve_backend("auto", torch.randn(2, 3)) == cpu_default
    with pytest.raises(ValueError, match="unknown backend"):
        IntegerSpike(backend="cupy")


def test_kernels_are_torch_library_ops_with_autograd(interp):
    """The kernels are registered custom ops: the fake (meta) kernel, the schema and the autograd formula pass
    torch.library.opcheck, so torch.compile and CUDA graphs can take a model through them."""
    x = _t(3, 2, 40, scale=2.0).requires_grad_(True)
    k = torch.tensor([0.45], device=DEV, requires_grad=True)
    sid, sg_a, sg_b = triton_lif._surrogate_constants(Sigmoid(4.0))
    for kk, kval in ((None, 0.5), (k, 0.0)):
        args = (x, kk, kval, 0.6, 0.0, sg_a, sg_b, True, True, False, True, triton_lif.SAVE_H32, sid)
        torch.library.opcheck(torch.ops.spikescope.lif_triton_fwd.default, args,
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    for store_inside in (True, False):
        torch.library.opcheck(torch.ops.spikescope.integer_spike_triton_fwd.default, (x, 4.0, 4.0, store_inside),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    x4 = x.detach().reshape(3, 2, 4, 10)
    scale, shift = torch.rand(4, device=DEV) + 0.5, torch.randn(4, device=DEV)
    torch.library.opcheck(torch.ops.spikescope.bn_integer_spike_triton.default, (x4, scale, shift, 4.0, 4.0),
                          test_utils=("test_schema", "test_faketensor"))
    # backward: dL/dk comes back shaped and typed like the decay (0-d here), whatever BLOCK the autotuner picks
    saved = torch.randn(3, 2, 40, device=DEV)
    g = torch.randn(3, 2, 40, device=DEV)
    for kk in (None, torch.tensor(0.45, device=DEV)):
        args = (g, None, saved, x.detach() if kk is not None else None, kk, 0.5, 0.6, 0.0, sg_a, sg_b, True, True,
                False, triton_lif.SAVE_H32, sid)
        torch.library.opcheck(torch.ops.spikescope.lif_triton_bwd.default, args,
                              test_utils=("test_schema", "test_faketensor"))
        grad_x, grad_k = torch.ops.spikescope.lif_triton_bwd(*args)
        assert grad_x.shape == saved.shape and grad_k.shape == (kk.shape if kk is not None else (0,))


@pytest.mark.slow
def test_torch_compile_takes_the_triton_lif_without_graph_break(interp):
    lif = PLIF(init_tau=1.8, v_threshold=0.6, surrogate=Sigmoid(4.0), backend="triton")
    x = _t(4, 2, 40, scale=2.0)
    outs = []
    for fn in (lif, torch.compile(lif, backend="eager", fullgraph=True)):
        xb = x.clone().requires_grad_(True)
        lif.w.grad = None
        s = fn(xb)
        (s * torch.linspace(-1, 1, 40, device=DEV)).sum().backward()
        outs.append((s.detach(), xb.grad, lif.w.grad.clone()))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
    torch.testing.assert_close(outs[0][2], outs[1][2])


def test_public_modules_with_backend_triton(interp):
    """LIF / PLIF / IntegerSpike(backend='triton') route to the kernels and agree with the fused/torch paths."""
    x = _t(3, 2, 50, scale=2.0)
    for make in (lambda b: LIF(v_reset=None, backend=b), lambda b: PLIF(backend=b)):
        out = []
        for b in ("triton", "fused"):
            n = make(b).to(DEV)
            xb = x.clone().requires_grad_(True)
            s = n(xb)
            s.sum().backward()
            out.append((s, xb.grad, getattr(n, "w", None)))
        assert torch.equal(out[0][0], out[1][0])
        torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-5, atol=1e-5)
        if out[0][2] is not None:
            torch.testing.assert_close(out[0][2].grad, out[1][2].grad, rtol=1e-5, atol=1e-5)
    assert torch.equal(IntegerSpike(backend="triton")(x), IntegerSpike(backend="torch")(x))


# ---------------------------------------------------------------- native kernels on a CUDA device (skipped without)


@pytest.mark.gpu
@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", COMBOS, ids=COMBO_IDS)
def test_gpu_fp32_all_combinations(v_reset, decay_input, detach_reset, surrogate):
    p = _params(v_reset, decay_input, detach_reset, surrogate)
    x = torch.randn(8, 4, 33, 65, device="cuda") * 1.5
    for k in (1 / 1.7, torch.tensor(0.42, device="cuda")):
        _check_lif(K.BACKENDS["triton"], x, k, p)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("T", [1, 4, 64])
def test_gpu_half_large_shapes(dtype, T):
    x = (torch.randn(T, 8, 64, 28, 28, device="cuda") * 1.5).to(dtype)
    for k, p in ((0.5, _params(0.0, True, False, Sigmoid(4.0))), (torch.tensor(0.4, device="cuda"), _params(None, True, True, ATan(2.0)))):
        ref = _run(lif_reference, x, k, p)
        got = _run(K.BACKENDS["triton"], x, k, p)
        assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
        torch.testing.assert_close(got[2].float(), ref[2].float(), rtol=2e-2, atol=2e-2)
        if ref[3] is not None:
            torch.testing.assert_close(got[3], ref[3], rtol=2e-2, atol=1e-2 * x.numel() ** 0.5)


@pytest.mark.gpu
def test_gpu_auto_picks_triton_and_handles_non_contiguous_input():
    x = torch.randn(4, 16, 32, device="cuda").transpose(1, 2) * 2
    assert K.resolve_backend("auto", x) == "triton"
    _check_lif(K.BACKENDS["triton"], x, 0.5, _params(0.0, True, False, ATan(2.0)))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_integer_spike(dtype):
    x = (torch.randn(4, 8, 64, 56, 56, device="cuda") * 3).to(dtype)
    outs = []
    for backend in ("torch", "triton"):
        xb = x.clone().requires_grad_(True)
        s = IntegerSpike(backend=backend)(xb)
        (s.float() * 1.5).sum().backward()
        outs.append((s.detach(), xb.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


# ------------------------------------------------- ahead-of-time compilation for an H100 (sm_90), no GPU needed

_AOT = r'''
import itertools, re
import triton
from triton.backends.compiler import GPUTarget
from spikescope.neurons.kernels import triton_integer as I, triton_lif as L

def build(tuner, sig, consts, config, fusion=False):
    fn = tuner.fn  # the autotuner's JIT function
    consts = dict(consts, BLOCK=config.kwargs["BLOCK"])
    full = {n: sig.get(n, "constexpr") for n in fn.arg_names}
    # what the JIT assumes for 16-aligned pointers and sizes divisible by 16 (e.g. [4,64,128,56,56])
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if n in sig and (sig[n].startswith("*") or n in ("N", "n", "last", "n_bucket"))}
    src = triton.compiler.ASTSource(fn=fn, signature=full, constexprs=consts, attrs=attrs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": config.num_warps, "enable_fp_fusion": fusion})
    return re.findall(r"^\s*(?:@%p\d+\s+)?((?:ld|st)\.global[\w.]*|fma[\w.]*)", k.asm["ptx"], re.M)

for config in (L.GPU_CONFIGS[0], L.GPU_CONFIGS[-1]):
  per_thread = config.kwargs["BLOCK"] // (32 * config.num_warps)
  for dt, mode in (("fp32", 0), ("bf16", 1), ("fp16", 1), ("fp32", 2)):
    # the widest load the thread's neurons fill: 128 bits, or 64 for 4 half-precision neurons per thread
    vec = "ld.global.v4.b32" if per_thread * (4 if dt == "fp32" else 2) >= 16 else "ld.global.v2.b32"
    save = {0: "*fp32", 1: "*" + dt, 2: "*u8"}[mode]
    common = dict(k_ptr="*fp32", k_val="fp32", N="i32", T="i32", n_bucket="i32", v_th="fp32", v_reset="fp32",
                  sg_b="fp32")
    for learn, hard in itertools.product((False, True), (False, True)):
        if mode == 2 and learn:
            continue
        ops = build(L._lif_fwd_kernel, dict(x_ptr="*" + dt, s_ptr="*" + dt, v_ptr="*" + dt, save_ptr=save, **common),
                    dict(K_FROM_PTR=learn, DECAY_INPUT=True, HARD_RESET=hard, STORE_V=True, SAVE_MODE=mode), config)
        assert not any(o.startswith("fma") for o in ops) and vec in ops, (dt, mode, ops)
        ops = build(L._lif_bwd_kernel, dict(gs_ptr="*" + dt, gv_ptr="*" + dt, save_ptr=save, x_ptr="*" + dt,
                                            gx_ptr="*" + dt, part_ptr="*fp32", ticket_ptr="*i32", gk_ptr="*fp32",
                                            last="i32", sg_a="fp32", **common),
                    dict(K_FROM_PTR=learn, LEARN_DECAY=learn, DECAY_INPUT=True, HARD_RESET=hard, DETACH_RESET=not hard,
                         HAS_GS=True, HAS_GV=True, SAVE_MODE=mode, SURROGATE=2 if mode == 2 else 1), config)
        assert not any(o.startswith("fma") for o in ops) and vec in ops, (dt, mode, ops)
    for store in (True, False):
        build(I._int_fwd_kernel, dict(x_ptr="*" + dt, s_ptr="*" + dt, inside_ptr="*u8", n="i32", n_bucket="i32",
                                      max_value="fp32", inv_norm="fp32"), dict(DIVIDE=True, STORE_INSIDE=store), config)
    build(I._int_bwd_kernel, dict(g_ptr="*" + dt, inside_ptr="*u8", gx_ptr="*" + dt, n="i32", n_bucket="i32",
                                  inv_norm="fp32"), dict(DIVIDE=True), config)
    ops = build(I._bn_int_fwd_kernel, dict(x_ptr="*" + dt, scale_ptr="*fp32", shift_ptr="*fp32", s_ptr="*" + dt,
                                           n="i32", inner="i32", channels="i32", n_bucket="i32", max_value="fp32",
                                           inv_norm="fp32"), dict(DIVIDE=True), config)
    assert not any(o.startswith("fma") for o in ops), (dt, ops)
print("ok")
'''


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_fma_and_with_vector_loads(tmp_path):
    """The native path (not the interpreter): every kernel family compiles to an H100 cubin (ptxas included) in the
    smallest and the widest autotuning configuration, with FMA contraction off (spikes bit-identical to torch) and
    vector global loads on the [T, N] streams (128-bit where a thread owns 16 bytes)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": src, "OMP_NUM_THREADS": "1",
           "TRITON_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", _AOT], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_static_traffic_of_the_benchmark_neuron_is_the_six_pass_floor(tmp_path):
    """benchmarks/kernel_traffic.py compiles what the public modules launch for sm_90 (here in the smallest and the
    widest autotuning configuration) and counts the PTX's global bytes: the benchmark neuron's fwd+bwd moves
    exactly the 6 passes of the bandwidth floor in every dtype, the uint8-code path fewer, no kernel spills
    registers to local memory, and every neuron is one launch forward and one backward."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "traffic.json"
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1", "TRITON_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, str(root / "benchmarks" / "kernel_traffic.py"), "--json", str(out),
                          "--configs", "256x2,2048x4"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    passes = data["fwd_bwd_passes"]
    for dtype in ("fp32", "bf16", "fp16"):
        assert passes[f"LIF {dtype} (benchmark neuron)"] == 6.0
    assert passes["LIF fp32 return_state"] == 8.0  # + V written forward, + dL/dV read backward
    assert passes["LIF fp32 Rectangle detach_reset"] == 4.5  # 1-byte codes instead of float32 H
    assert passes["IntegerSpike fp32"] == 4.5  # x, s, 1-byte flag; grad, flag, dL/dx
    assert passes["IntegerSpike bf16 inference"] == 2.0  # no flag without autograd: read x, write s
    # read x, write s (2 passes) + the per-element loads of the float32 [C] scale and shift tables
    assert passes["BNIntegerSpike fp32 inference"] == 4.0 and passes["BNIntegerSpike bf16 inference"] == 6.0
    assert all(k["local_bytes"] == 0 for k in data["kernels"]), "a kernel spills registers"
    assert {(k["block"], k["num_warps"]) for k in data["kernels"]} == {(256, 2), (2048, 4)}
    assert {k["kernel"] for k in data["kernels"]} == {"_lif_fwd_kernel", "_lif_bwd_kernel", "_int_fwd_kernel",
                                                       "_int_bwd_kernel", "_bn_int_fwd_kernel"}
    launches = data["launches"]
    for case in ("LIF fp32", "PLIF fp32", "PLIF bf16", "IntegerSpike fp32"):  # PLIF: dL/dk reduced in the launch
        assert (launches[case]["forward"], launches[case]["backward"]) == (1, 1), (case, launches[case])
    assert launches["BNIntegerSpike fp32 (inference)"]["forward"] == 1
