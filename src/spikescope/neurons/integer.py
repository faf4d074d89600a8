"""Integer multi-bit spikes (SDT-v3 "MultiSpike", I-LIF): a stateless clip-and-round quantiser.

Forward ``s = round(clip(x, 0, D)) / norm``; backward is the straight-through estimator (ST-ERF paper, Sec. 2.3):
gradient 1 for 0 <= x <= D and 0 outside, then the 1/norm factor. With ``norm = D`` (the default) the spikes are
{0, 1/D, ..., 1}; the SDT-v3 classification head uses ``norm = 1`` (integers 0..D). At inference an integer spike
is read as D binary "virtual timesteps".

:class:`BNIntegerSpike` is ``IntegerSpike(BatchNorm(x))`` with, for inference on CUDA, the BN folded to a per-channel
scale and shift and applied in the quantising kernel (one pass instead of two); :func:`fuse_bn_integer_spike` puts
it in a model wherever a BatchNorm's output is read by an IntegerSpike alone.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import kernels
from .lif import check_sequence

__all__ = ["IntegerSpike", "BNIntegerSpike", "fuse_bn_integer_spike"]

if kernels.integer_spike_triton is not None:  # Triton imports
    from .kernels.triton_integer import bn_integer_spike_triton
else:
    bn_integer_spike_triton = None

_TORCH_BACKENDS = ("torch", "fused", "compile", "cpu")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class _ClipRoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, max_value: float) -> torch.Tensor:
        ctx.save_for_backward((x >= 0) & (x <= max_value))  # 1 byte per element
        return torch.round(torch.clamp(x, 0, max_value))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None


class IntegerSpike(nn.Module):
    """``x [T, ...]`` -> ``round(clip(x, 0, max_value)) / norm`` with a straight-through gradient.

    Args:
        max_value: D, the largest integer a spike can carry (4 in SDT-v3).
        norm: the divisor; ``None`` means ``max_value``.
        backend: ``"auto"`` (Triton kernels on CUDA float32/16/bfloat16 tensors when Triton imports, the compiled
            CPU kernel on CPU float32/bfloat16 tensors when a C compiler is found, else the torch autograd Function),
            ``"triton"``, ``"cpu"``, or ``"torch"`` (``"fused"``/``"compile"`` are accepted as ``"torch"`` so one
            backend name can be passed to every neuron of a model).
    """

    def __init__(self, max_value: int = 4, norm: float | None = None, backend: str = "auto") -> None:
        super().__init__()
        if max_value < 1:
            raise ValueError(f"IntegerSpike: max_value must be >= 1, got {max_value}")
        if norm is not None and not norm > 0:
            raise ValueError(f"IntegerSpike: norm must be > 0, got {norm}")
        if backend not in ("auto", "triton", *_TORCH_BACKENDS):
            raise ValueError(f"IntegerSpike: unknown backend {backend!r}; choose 'auto', 'triton', 'cpu' or 'torch'")
        if backend == "triton" and kernels.integer_spike_triton is None:
            raise ValueError("IntegerSpike: backend='triton' needs Triton, which does not import here; use 'auto'")
        self.max_value = int(max_value)
        self.norm = float(max_value if norm is None else norm)
        self.backend = backend

    def forward(
        self, x: torch.Tensor, return_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``x``; with ``return_state`` also return ``x`` itself (the stateless "membrane")."""
        check_sequence(x, "IntegerSpike")
        s = None
        if self._use_triton(x):
            s = kernels.integer_spike_triton(x, float(self.max_value), self.norm)
        elif self.backend == "cpu" or (self.backend == "auto" and kernels.cpu.compiler() is not None):
            s = kernels.integer_spike_cpu(x, float(self.max_value), self.norm)
        if s is None:
            s = _ClipRoundSTE.apply(x, float(self.max_value))
            if self.norm != 1.0:
                s = s / self.norm
        return (s, x) if return_state else s

    def _use_triton(self, x: torch.Tensor) -> bool:
        if self.backend == "triton":
            return True
        return (
            self.backend == "auto"
            and kernels.integer_spike_triton is not None
            and x.is_cuda
            and x.dtype in _TRITON_DTYPES
        )

    def extra_repr(self) -> str:
        return f"max_value={self.max_value}, norm={self.norm:g}, backend={self.backend!r}"


class BNIntegerSpike(nn.Module):
    """``IntegerSpike(BN(x))`` for ``x [T, B, C, ...]``; in eval mode without autograd, one Triton pass on CUDA.

    The fused kernel computes ``y = x * scale[c] + shift[c]`` in float32 (``scale = weight / sqrt(running_var + eps)``
    and ``shift = bias - running_mean * scale``, folded in float64, rounded to float32 once, refolded when the BN's
    tensors change), rounds ``y`` to the input dtype like BN's output, and quantises: it reads X and writes S, where
    the unfused pair reads X, writes BN's output, reads it and writes S. Its spikes are those of the unfused pair
    except where the two ways of rounding the affine put ``y`` on either side of a half-integer (one level, 1/norm).
    Training mode, an input or BN parameter that needs a gradient, a CPU tensor (unless the spike's backend is
    ``"triton"``) or another dtype than float32/16/bfloat16 runs the unfused pair: ``spike(bn(x))``, exactly.

    Args:
        bn: a BatchNorm with running statistics, over ``[T*B, C, ...]`` (``time_first=False``, e.g. inside
            :class:`~spikescope.layers.ConvBN`) or over ``[T, B, C, ...]`` itself (``time_first=True``).
        spike: the :class:`IntegerSpike` that reads the BN's output.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, spike: IntegerSpike, time_first: bool = False) -> None:
        super().__init__()
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
            raise ValueError(f"BNIntegerSpike: bn must be a BatchNorm with running statistics, got {bn!r}")
        if not isinstance(spike, IntegerSpike):
            raise ValueError(f"BNIntegerSpike: spike must be an IntegerSpike, got {type(spike).__name__}")
        self.bn, self.spike, self.time_first = bn, spike, time_first
        self.register_buffer("scale", torch.empty(bn.num_features, dtype=torch.float32), persistent=False)
        self.register_buffer("shift", torch.empty(bn.num_features, dtype=torch.float32), persistent=False)
        self._folded_from: tuple = ()

    def _bn_tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var) if t is not None]

    def _fold(self) -> None:
        """Recompute scale/shift from the BN when one of its tensors changed since the last fold (no launch else)."""
        key = tuple((t.data_ptr(), t._version) for t in self._bn_tensors())
        if key == self._folded_from:
            return
        bn = self.bn
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var.double() + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            shift = -bn.running_mean.double() * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
            self.scale.copy_(scale)
            self.shift.copy_(shift)
        self._folded_from = tuple((t.data_ptr(), t._version) for t in self._bn_tensors())

    def _fusable(self, x: torch.Tensor) -> bool:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.bn.parameters()))
        return (
            not self.training
            and not needs_grad
            and bn_integer_spike_triton is not None
            and (x.is_cuda or self.spike.backend == "triton")
            and x.dtype in _TRITON_DTYPES
            and x.dim() >= 3
            and x.shape[2] == self.bn.num_features
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, C, ...]`` -> integer spikes of the same shape."""
        check_sequence(x, "BNIntegerSpike")
        if self._fusable(x):
            self._fold()
            return bn_integer_spike_triton(x, self.scale, self.shift, float(self.spike.max_value),
                                                   self.spike.norm)
        y = self.bn(x) if self.time_first else self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return self.spike(y)

    def extra_repr(self) -> str:
        return f"time_first={self.time_first}"


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Readers(TorchDispatchMode):
    """Which module's forward reads each storage (views and the fusion checks themselves not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: dict[int, set] = defaultdict(set)
        self.inside: list[nn.Module] = []
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = func._schema
        is_view = bool(schema.returns) and schema.returns[0].alias_info is not None and not schema.is_mutable
        if not (self.paused or is_view):
            for a in torch.utils._pytree.tree_leaves((args, kwargs)):
                if isinstance(a, torch.Tensor):
                    self.readers[_storage(a)].add(self.inside[-1] if self.inside else None)
        return func(*args, **kwargs)


def _is_plain_bn(bn: nn.modules.batchnorm._BatchNorm, inp: torch.Tensor, out: torch.Tensor) -> bool | None:
    """``None`` unless ``out`` is the eval-mode batch norm of ``inp``; else whether the channels are at dim 2."""
    if bn.running_mean is None or out.shape != inp.shape or inp.dim() < 2:
        return None
    args = (bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if inp.shape[1] == bn.num_features and torch.equal(out, F.batch_norm(inp, *args)):
        return False
    if inp.dim() >= 3 and inp.shape[2] == bn.num_features and torch.equal(
        out, F.batch_norm(inp.flatten(0, 1), *args).unflatten(0, inp.shape[:2])
    ):
        return True
    return None


def fuse_bn_integer_spike(model: nn.Module, example: torch.Tensor) -> list[str]:
    """For inference: replace each BatchNorm whose output only an :class:`IntegerSpike` reads by a
    :class:`BNIntegerSpike` in the spike's place (the BN becomes ``nn.Identity``), in place.

    One forward of ``model(example)`` under ``no_grad`` finds the pairs from the data flow: a BN (run once, with
    running statistics, eval-mode output) whose output tensor is read by one IntegerSpike (run once, channels at dim
    2 of its ``[T, B, C, ...]`` input) and by no other op. Fuse after loading weights (the BN's state-dict keys move
    under the spike's name). Returns the names of the fused spikes.
    """
    if model.training:
        raise ValueError("fuse_bn_integer_spike: the model is in training mode; call model.eval() first (the fused "
                         "layer uses the BN's running statistics)")
    names: dict[nn.Module, list[str]] = defaultdict(list)
    for name, m in model.named_modules(remove_duplicate=False):
        names[m].append(name)
    mode = _Readers()
    calls: dict[nn.Module, list] = defaultdict(list)  # bn -> [(out storage, time_first, out)]; spike -> [input]
    handles = []

    def bn_hook(m, args, out):
        mode.paused = True
        calls[m].append((_storage(out), _is_plain_bn(m, args[0], out), out))  # ``out`` kept: its address stays its own
        mode.readers.pop(_storage(out), None)  # reads so far were of a freed tensor at the same address
        mode.paused = False

    def spike_pre(m, args):
        calls[m].append(args[0])
        mode.inside.append(m)

    def spike_post(m, args, out):
        mode.inside.pop()

    for m in names:
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_hook(bn_hook))
        elif isinstance(m, IntegerSpike):
            handles += [m.register_forward_pre_hook(spike_pre), m.register_forward_hook(spike_post)]
    try:
        with torch.no_grad(), mode:
            model(example)
    finally:
        for h in handles:
            h.remove()
    spikes_by_input = defaultdict(list)
    for m, seen in calls.items():
        if isinstance(m, IntegerSpike) and len(seen) == 1:
            spikes_by_input[_storage(seen[0])].append((m, seen[0]))
    fused = []
    for bn, seen in calls.items():
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or len(seen) != 1 or len(names[bn]) != 1:
            continue
        storage, time_first, out = seen[0]
        pair = spikes_by_input.get(storage, [])
        if time_first is None or len(pair) != 1 or mode.readers[storage] - {pair[0][0]}:
            continue
        spike, x = pair[0]
        folded = (x.shape == out.shape) if time_first else (x.dim() >= 3 and x.flatten(0, 1).shape == out.shape)
        if not folded or x.shape[2] != bn.num_features or len(names[spike]) != 1:
            continue
        _set(model, names[bn][0], nn.Identity())
        _set(model, names[spike][0], BNIntegerSpike(bn, spike, time_first))
        fused.append(names[spike][0])
    return fused


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
