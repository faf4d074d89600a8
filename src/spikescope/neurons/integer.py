"""Integer multi-bit spikes (SDT-v3 "MultiSpike", I-LIF): a stateless clip-and-round quantiser.

Forward ``s = round(clip(x, 0, D)) / norm``; backward is the straight-through estimator (ST-ERF paper, Sec. 2.3):
gradient 1 for 0 <= x <= D and 0 outside, then the 1/norm factor. With ``norm = D`` (the default) the spikes are
{0, 1/D, ..., 1}; the SDT-v3 classification head uses ``norm = 1`` (integers 0..D). At inference an integer spike
is read as D binary "virtual timesteps".
"""
from __future__ import annotations

import torch
from torch import nn

from . import kernels
from .lif import check_sequence

__all__ = ["IntegerSpike"]

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
