"""Compiled CPU kernels for LIF / PLIF and the integer spike: one pass over ``[T, N]`` each way.

The C source next to this module (``cpu_kernels.c``) is compiled on first use with the system C compiler (``$CC``,
else ``cc``), one small shared library per kernel variant (dtype, reset, surrogate, ...: about 0.2 s each), and cached
under ``$SPIKESCOPE_KERNEL_CACHE`` (default ``~/.cache/spikescope/cpu-kernels``) keyed on the source, the flags, the
compiler and the CPU, so a later process loads it at once. Nothing depends on T or on the shape.

Each call walks the neurons in chunks of 128 and T inside the chunk, the state in a stack array: the forward reads
``X`` once and writes the spikes and what backward keeps once; the backward reads that, ``dL/dS`` (and ``dL/dV``)
once and writes ``dL/dX`` once (``X`` again for PLIF with ``decay_input``), the floor of 6 passes of
``benchmarks/neurons.py``. A call that writes more than a core keeps in its caches (:func:`stream_threshold`)
writes with non-temporal stores, which do not first read the destination into the cache: each output then costs
one pass over memory instead of two. The charge is compiled without FMA contraction, in the reference's order of
roundings, so spikes and membranes are bit-identical to :mod:`.reference`. Backward may contract (it is compiled with
FMAs) and evaluates the smooth surrogates 16 (AVX-512) or 8 (AVX2) lanes at a time with a polynomial ``exp`` and the
hardware reciprocal estimate refined by one Newton step (relative error ~2e-7, where a divide would stall): gradients
agree within 1e-6. A call of more than 16 steps runs in passes of 16 steps, each neuron's state carried between
passes. What backward keeps is what :mod:`.fused` keeps (``H`` in float32, a uint8 code with Rectangle and a
detached or soft reset, PLIF with ``decay_input`` also ``X``), nothing under ``torch.no_grad()``. float32 and
bfloat16 run here; other dtypes and custom surrogates go to :func:`.fused.lif_fused`. With
``torch.get_num_threads() > 1`` large calls are split over neurons into that many threads (the GIL is released).

Page faults dominate a fresh allocation on the CPU (filling a new 32 MiB tensor costs several times refilling an
old one), so the large buffers these kernels create (spikes, what backward keeps, ``dL/dX``) come from a small pool:
a buffer is handed out again only once nothing but the pool references its storage (so a graph kept with
``retain_graph`` or a tensor the caller holds is never reused), new ones are advised to use transparent huge pages,
and the pool holds at most ``$SPIKESCOPE_CPU_POOL_MIB`` (default 1024) MiB; :func:`empty_cache` releases it.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..params import LIFParams
from ..surrogate import ATan, Rectangle, Sigmoid, Triangle
from .fused import lif_fused

__all__ = ["lif_cpu", "integer_spike_cpu", "compiler", "empty_cache", "KernelBuildError", "CPU_DTYPES"]

SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=256", "-ffp-contract=off", "-fno-math-errno",
         "-fno-trapping-math", "-shared", "-fPIC")
#: the LIF backward promises gradients within 1e-6, not bit-identity, so it may fuse a * b + c into one FMA
BACKWARD_FLAGS = tuple("-ffp-contract=fast" if f == "-ffp-contract=off" else f for f in FLAGS)
CPU_DTYPES = (torch.float32, torch.bfloat16)
#: surrogate class -> (kernel id, its two constants from alpha), the formulas of :mod:`..surrogate`
_SURROGATES = {ATan: (0, lambda a: (a / 2, math.pi / 2 * a)), Sigmoid: (1, lambda a: (a, a)),
               Rectangle: (2, lambda a: (a, 0.5 / a)), Triangle: (3, lambda a: (a, a**2))}
SAVE_NONE, SAVE_H, SAVE_CODES = 0, 1, 2
_MIN_SPLIT = 1 << 16  # neurons per thread below which a call stays on one thread

_P, _I64, _F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "spk_lif_fwd": [_P] * 5 + [_I64] * 4 + [_F32] * 4 + [_I64],
    "spk_lif_bwd": [_P] * 7 + [_I64] * 4 + [_F32] * 5 + [_I64],
    "spk_int_fwd": [_P] * 3 + [_I64] + [_F32] * 2 + [_I64],
    "spk_int_bwd": [_P] * 3 + [_I64] + [_F32] + [_I64],
}
_libs: dict[tuple, ctypes.CDLL] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_buffers: dict[int, list[tuple[torch.Tensor, int]]] = {}  # nbytes -> [(uint8 buffer, its idle use count)]
_buffer_lock = threading.Lock()
_POOLED_MIN = 1 << 20  # smaller tensors come straight from torch.empty (malloc reuses them cheaply)
_HUGE_PAGE, _MADV_HUGEPAGE = 1 << 21, 14
_warned: set[str] = set()
#: bytes a call must write to use non-temporal stores (None: :func:`stream_threshold`); smaller outputs are written
#: through the cache, where the next layer finds them
STREAM_MIN_BYTES: int | None = None


class KernelBuildError(RuntimeError):
    """The C kernels could not be compiled or loaded here (no compiler, or it failed)."""


@functools.cache
def compiler() -> str | None:
    """The C compiler the kernels are built with, or ``None`` when there is none (the ``auto`` backend then uses
    ``fused``)."""
    return shutil.which(os.environ.get("CC", "cc"))


def _cache_dir() -> Path:
    root = os.environ.get("SPIKESCOPE_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "spikescope" / "cpu-kernels"


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() + platform.machine()


def _library(defines: tuple[tuple[str, int], ...]) -> ctypes.CDLL:
    """Load (compiling once, atomically, into the cache) the kernel variant selected by ``defines``."""
    lib = _libs.get(defines)
    if lib is not None:
        return lib
    with _lock:
        if defines in _libs:
            return _libs[defines]
        cc = compiler()
        if cc is None:
            raise KernelBuildError("no C compiler found (set $CC or install cc)")
        args = [f"-D{k}={v}" for k, v in defines]
        flags = BACKWARD_FLAGS if defines[0][0] == "SPK_LIF_BWD" else FLAGS
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, *args, version, _cpu_signature()]).encode())
        target = _cache_dir() / f"{defines[0][0].lower()}-{key.hexdigest()[:20]}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            try:
                run = subprocess.run([cc, *flags, *args, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                     timeout=120)
                if run.returncode != 0:
                    raise KernelBuildError(f"{cc} failed: {run.stderr.strip()[-400:]}")
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        lib = ctypes.CDLL(str(target))
        for name, argtypes in _SIGNATURES.items():
            if hasattr(lib, name):
                getattr(lib, name).argtypes = argtypes
                getattr(lib, name).restype = None
        _libs[defines] = lib
        return lib


def _storage_uses(buf: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(buf.untyped_storage()._cdata)


@functools.cache
def _madvise():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc.madvise
    except (OSError, AttributeError):
        return None


def _advise_huge_pages(buf: torch.Tensor) -> None:
    """Ask the kernel for transparent huge pages on the whole 2 MiB pages inside ``buf`` (before first touch)."""
    madvise = _madvise()
    start, end = buf.data_ptr(), buf.data_ptr() + buf.numel()
    a, b = -(-start // _HUGE_PAGE) * _HUGE_PAGE, end // _HUGE_PAGE * _HUGE_PAGE
    if madvise is not None and sys.platform == "linux" and b > a:
        madvise(a, b - a, _MADV_HUGEPAGE)


def _empty(shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)``, from the pool when an idle buffer of that size is in it."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _POOLED_MIN:
        return torch.empty(shape, dtype=dtype)
    with _buffer_lock:
        entries = _buffers.setdefault(nbytes, [])
        buf = next((b for b, idle in entries if _storage_uses(b) <= idle), None)
        if buf is None:
            buf = torch.empty(nbytes, dtype=torch.uint8)
            _advise_huge_pages(buf)
            held = sum(n * len(e) for n, e in _buffers.items())
            if held + nbytes <= int(os.environ.get("SPIKESCOPE_CPU_POOL_MIB", "1024")) << 20:
                entries.append((buf, _storage_uses(buf)))
        return buf.view(dtype).view(shape)


def empty_cache() -> None:
    """Release the pooled CPU buffers (those still in use stay alive with their tensors)."""
    with _buffer_lock:
        _buffers.clear()


def _ranges(n: int) -> list[tuple[int, int]]:
    """Split ``[0, n)`` into ``torch.get_num_threads()`` ranges (multiples of 64) when ``n`` is large enough."""
    parts = max(1, min(torch.get_num_threads(), n // _MIN_SPLIT))
    step = ((n + parts - 1) // parts + 63) // 64 * 64
    return [(a, min(a + step, n)) for a in range(0, n, step)] if parts > 1 else [(0, n)]


def _run(fn, ranges: list[tuple[int, int]]) -> None:
    """Call ``fn(i, begin, end)`` for every range, on worker threads when there is more than one."""
    global _pool, _pool_size
    if len(ranges) == 1:
        fn(0, *ranges[0])
        return
    if _pool is None or _pool_size < len(ranges):
        _pool, _pool_size = ThreadPoolExecutor(len(ranges), thread_name_prefix="spikescope-cpu"), len(ranges)
    list(_pool.map(lambda r: fn(r[0], *r[1]), enumerate(ranges)))


_SYSFS_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


def _cache_bytes(level: int, root: Path = _SYSFS_CACHES) -> int:
    """Size of the first CPU's data or unified cache of ``level``, read from Linux's sysfs (``os.sysconf`` knows no
    cache names in CPython); 0 when unknown."""
    for index in sorted(root.glob("index*")):
        try:
            if int((index / "level").read_text()) != level or (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        digits = size.rstrip("KMG")
        if digits.isdigit():
            return int(digits) * scale
    return 0


@functools.cache
def stream_threshold() -> int:
    """Bytes a call must write to use non-temporal stores unless :data:`STREAM_MIN_BYTES` is set: the last-level
    cache, capped at 16 times this core's L2. The cap matters on a many-core server (or a VM on one): its L3 (480 MiB
    on the Xeon of docs/neurons.md) is shared by every core, and what one core writes does not stay there for long."""
    l2, l3 = _cache_bytes(2), _cache_bytes(3)
    llc = l3 or l2 or 8 << 20
    return min(llc, 16 * l2) if l2 else llc


def _stream(*outputs: torch.Tensor | None) -> int:
    """1 when a call writes more than :func:`stream_threshold`: its stores then bypass the cache (see the C source);
    smaller outputs stay cached for the layer that reads them next."""
    written = sum(t.numel() * t.element_size() for t in outputs if t is not None)
    return int(written >= (STREAM_MIN_BYTES if STREAM_MIN_BYTES is not None else stream_threshold()))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _surrogate(p: LIFParams) -> tuple[int, float, float] | None:
    entry = _SURROGATES.get(type(p.surrogate))
    if entry is None:
        return None
    sid, consts = entry
    return (sid, *consts(p.surrogate.alpha))


def _save_mode(p: LIFParams, learn_decay: bool) -> int:
    if p.surrogate.piecewise_constant and not learn_decay and (p.detach_reset or not p.hard_reset):
        return SAVE_CODES
    return SAVE_H


class _CpuLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k, p: LIFParams, return_state: bool, needs_grad: bool, sur: tuple):
        ctx.set_materialize_grads(False)
        learn_decay = isinstance(k, torch.Tensor)
        kf = float(k.detach().float()) if learn_decay else float(k)
        x = x.contiguous()
        T, N = x.shape[0], x[0].numel()
        bf = int(x.dtype == torch.bfloat16)
        mode = _save_mode(p, learn_decay) if needs_grad else SAVE_NONE
        spikes = _empty(x.shape, x.dtype)
        v_seq = _empty(x.shape, x.dtype) if return_state else None
        h = _empty(x.shape, torch.float32) if mode == SAVE_H else None
        codes = _empty(x.shape, torch.uint8) if mode == SAVE_CODES else None
        lib = _library((("SPK_LIF_FWD", 1), ("K_BF", bf), ("K_DECAY_INPUT", int(p.decay_input)),
                        ("K_HARD", int(p.hard_reset)), ("K_STORE_V", int(return_state)), ("K_SAVE", mode)))
        win = 0.5 / p.surrogate.alpha if mode == SAVE_CODES else 0.0
        args = (x.data_ptr(), spikes.data_ptr(), _ptr(v_seq), _ptr(h), _ptr(codes), T, N)
        stream = _stream(spikes, v_seq, h, codes)
        _run(lambda i, a, b: lib.spk_lif_fwd(*args, a, b, kf, p.v_threshold, p.reset_value, win, stream), _ranges(N))
        keep_x = learn_decay and p.decay_input
        ctx.save_for_backward(h if codes is None else codes, x if keep_x else None, k if learn_decay else None)
        ctx.p, ctx.kf, ctx.mode, ctx.sur = p, kf, mode, sur
        return (spikes, v_seq) if return_state else spikes

    @staticmethod
    def backward(ctx, grad_s, grad_v=None):
        saved, x, k = ctx.saved_tensors
        p: LIFParams = ctx.p
        if grad_s is None and grad_v is None:
            return None, None, None, None, None, None
        learn = 0 if k is None else (2 if x is not None else 1)
        ref = grad_s if grad_s is not None else grad_v
        gs = grad_s.contiguous() if grad_s is not None else torch.zeros_like(ref)
        gv = grad_v.contiguous() if grad_v is not None else None
        T, N = saved.shape[0], saved[0].numel()
        grad_x = _empty(saved.shape, ref.dtype)
        sid, sg_a, sg_b = ctx.sur
        lib = _library((("SPK_LIF_BWD", 1), ("K_BF", int(ref.dtype == torch.bfloat16)), ("K_SUR", sid),
                        ("K_SAVE", ctx.mode), ("K_HAS_GV", int(gv is not None)), ("K_LEARN", learn),
                        ("K_HARD", int(p.hard_reset)), ("K_DETACH", int(p.detach_reset)),
                        ("K_DECAY_INPUT", int(p.decay_input))))
        consts = (ctx.kf, p.v_threshold, p.reset_value, sg_a, sg_b, _stream(grad_x))
        codes = ctx.mode == SAVE_CODES
        ranges = _ranges(N)
        gk = (ctypes.c_double * len(ranges))()
        base = ctypes.addressof(gk)

        def part(i: int, a: int, b: int) -> None:
            lib.spk_lif_bwd(gs.data_ptr(), _ptr(gv), None if codes else saved.data_ptr(),
                            saved.data_ptr() if codes else None, _ptr(x), grad_x.data_ptr(), base + 8 * i,
                            T, N, a, b, *consts)

        _run(part, ranges)
        grad_k = torch.tensor(sum(gk), dtype=k.dtype).reshape(k.shape) if learn else None
        return grad_x, grad_k, None, None, None, None


def _warn_fallback(what: str, err: Exception) -> None:
    if what not in _warned:
        _warned.add(what)
        warnings.warn(f"{what}: the compiled CPU kernels are unavailable ({err}); using the slower torch path",
                      RuntimeWarning, stacklevel=3)


def lif_cpu(
    x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Compiled CPU LIF on ``x [T, ...]`` (float32 / bfloat16; else :func:`.fused.lif_fused`)."""
    if x.device.type != "cpu":
        raise RuntimeError(f"LIF: backend='cpu' needs a CPU tensor, got one on {x.device}; use backend='auto'")
    sur = _surrogate(p)
    if x.dtype not in CPU_DTYPES or x.numel() == 0 or sur is None:
        return lif_fused(x, k, p, return_state)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (isinstance(k, torch.Tensor) and k.requires_grad))
    try:
        out = _CpuLIF.apply(x, k, p, return_state, needs_grad, sur)
    except KernelBuildError as e:
        _warn_fallback("LIF", e)
        return lif_fused(x, k, p, return_state)
    return out if return_state else (out, None)


class _CpuIntegerSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, max_value: float, norm: float) -> torch.Tensor:
        x = x.contiguous()
        s = _empty(x.shape, x.dtype)
        inside = _empty(x.shape, torch.uint8)
        lib = _library((("SPK_INT", 1), ("K_BF", int(x.dtype == torch.bfloat16)), ("K_DIVIDE", int(norm != 1.0))))
        base = (x.data_ptr(), s.data_ptr(), inside.data_ptr())
        size, stream = x.element_size(), _stream(s, inside)
        _run(lambda i, a, b: lib.spk_int_fwd(base[0] + a * size, base[1] + a * size, base[2] + a, b - a,
                                          max_value, norm, stream), _ranges(x.numel()))
        ctx.save_for_backward(inside)
        ctx.norm, ctx.lib = norm, lib
        return s

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        grad = grad.contiguous()
        gx = _empty(grad.shape, grad.dtype)
        size, stream = grad.element_size(), _stream(gx)
        base = (grad.data_ptr(), inside.data_ptr(), gx.data_ptr())
        _run(lambda i, a, b: ctx.lib.spk_int_bwd(base[0] + a * size, base[1] + a, base[2] + a * size, b - a, ctx.norm,
                                              stream), _ranges(grad.numel()))
        return gx, None, None


def integer_spike_cpu(x: torch.Tensor, max_value: float, norm: float) -> torch.Tensor | None:
    """``round(clip(x, 0, max_value)) / norm`` with the straight-through gradient on a CPU float32/bfloat16 tensor;
    ``None`` when the kernels cannot serve this call (the caller then uses the torch path)."""
    if x.device.type != "cpu" or x.dtype not in CPU_DTYPES or x.numel() == 0:
        return None
    try:
        return _CpuIntegerSpike.apply(x, float(max_value), float(norm))
    except KernelBuildError as e:
        _warn_fallback("IntegerSpike", e)
        return None
