"""Layouts of the tensors an ERF is read from, and how each becomes a map ``[T_out, B, C, H, W]``.

A layout names the axes of a layer's output. The batch axis ``B`` may hold time folded in (``T*B``); a prefix ``T``
is an explicit time axis. Spelled as strings (``--layout`` on the command line, ``layout=`` in the API):

=====================  ============================================================================================
``TBCHW``, ``BCHW``    channels-first maps (``BCHW``: ``[B, C, H, W]`` or ``[T*B, C, H, W]``)
``TBHWC``, ``BHWC``    channels-last maps (timm's Swin, ``permute(0, 2, 3, 1)``)
``BNC``, ``TBNC``      tokens, channels last; ``BNC:14x14+1`` = a 14x14 grid after 1 class/distillation token
``BCN``, ``TBCN``      tokens, channels first (Conv1d outputs); grid and prefix as for ``BNC``
``windows:HxW/w[/s]``  window-partitioned tokens ``[B*nW, w*w, C]`` (or ``[B*nW, w, w, C]``) of an ``H x W`` grid,
                       windows of side ``w``, after a cyclic shift by ``-s`` (Swin's shifted windows)
=====================  ============================================================================================

A token layout without a grid takes the grid from the input's aspect ratio (``N - prefix = h * w`` with
``h : w = H : W``); more than one fitting (grid, prefix) is refused. Prefix tokens are dropped, padding of a
window grid is cropped, the shift is undone, so every map is in image order.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .hooks import LayerError

__all__ = ["Layout", "LayoutError", "parse_layout", "LAYOUT_KINDS"]

LAYOUT_KINDS = ("TBCHW", "BCHW", "TBHWC", "BHWC", "BNC", "TBNC", "BCN", "TBCN", "windows")
_TOKENS = ("BNC", "TBNC", "BCN", "TBCN")
_RANK = {"TBCHW": 5, "TBHWC": 5, "BCHW": 4, "BHWC": 4, "BNC": 3, "BCN": 3, "TBNC": 4, "TBCN": 4}


class LayoutError(LayerError):
    """A layer's output cannot be read as a map with certainty, or does not fit the layout given for it."""


@dataclass(frozen=True)
class Layout:
    """The axes of one layer output.

    ``kind`` is one of :data:`LAYOUT_KINDS`; ``grid`` (h, w) the token grid (tokens and windows), ``prefix`` the
    number of leading non-grid tokens, ``window`` the window side and ``shift`` the cyclic shift (windows only).
    """

    kind: str
    grid: tuple[int, int] | None = None
    prefix: int = 0
    window: int | None = None
    shift: int = 0

    def __str__(self) -> str:
        if self.kind == "windows":
            return f"windows:{self.grid[0]}x{self.grid[1]}/{self.window}" + (f"/{self.shift}" if self.shift else "")
        if self.kind in _TOKENS and self.grid is not None:
            return f"{self.kind}:{self.grid[0]}x{self.grid[1]}" + (f"+{self.prefix}" if self.prefix else "")
        return self.kind

    def with_grid(self, n_tokens: int, input_hw: tuple[int, int], name: str) -> Layout:
        """This token layout with its grid (and prefix) fitted to ``n_tokens`` when it has none."""
        if self.kind not in _TOKENS or self.grid is not None:
            return self
        fits = [(p, g) for p in range(3) for g in [_fit_grid(n_tokens - p, input_hw)] if g is not None]
        if len(fits) != 1:
            found = "no grid" if not fits else "several grids: " + ", ".join(f"{g[0]}x{g[1]}+{p}" for p, g in fits)
            raise LayoutError(
                f"layer {name!r}: {n_tokens} tokens on a {input_hw[0]}x{input_hw[1]} input fit {found}; give the grid "
                f"and prefix tokens explicitly, e.g. --layout {name}={self.kind}:14x14+1 (layout= in Python)"
            )
        p, g = fits[0]
        return Layout(self.kind, g, p)

    def to_map(self, y: torch.Tensor, T: int, B: int, name: str) -> torch.Tensor:
        """``y`` in this layout (batch ``B``, ``T`` timesteps) -> ``[T_out, B, C, H, W]`` (a differentiable view)."""
        shape = tuple(y.shape)
        rank = _RANK.get(self.kind)
        if rank is not None and y.dim() != rank:
            raise LayoutError(f"layer {name!r}: layout {self} needs a {rank}-D output, got shape {shape}")
        if self.kind == "windows":
            return self._unwindow(y, T, B, name)
        timed = self.kind.startswith("T")
        if timed and shape[1] != B:
            raise LayoutError(f"layer {name!r}: layout {self} needs batch {B} on axis 1, got shape {shape}")
        if self.kind in ("TBHWC", "BHWC"):
            y = y.movedim(-1, -3)
        elif self.kind in _TOKENS:
            if self.kind in ("BNC", "TBNC"):
                y = y.transpose(-1, -2)  # -> [..., C, N]
            h, w = self.grid
            if y.shape[-1] != self.prefix + h * w:
                raise LayoutError(
                    f"layer {name!r}: layout {self} needs {self.prefix + h * w} tokens, got shape {shape}"
                )
            y = y[..., self.prefix:].unflatten(-1, (h, w))
        return y if timed else _unfold_time(y, T, B, name, self)

    def _unwindow(self, y: torch.Tensor, T: int, B: int, name: str) -> torch.Tensor:
        (h, w), s = self.grid, self.window
        hp, wp = -(-h // s) * s, -(-w // s) * s
        n_win = (hp // s) * (wp // s)
        if y.dim() == 4:
            y = y.flatten(1, 2)
        if y.dim() != 3 or y.shape[1] != s * s or y.shape[0] % n_win:
            raise LayoutError(
                f"layer {name!r}: layout {self} needs [batch*{n_win} windows, {s * s} tokens, C], got {tuple(y.shape)}"
            )
        C = y.shape[-1]
        y = y.reshape(-1, hp // s, wp // s, s, s, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, hp, wp, C)
        y = y[:, :h, :w]
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        return _unfold_time(y.movedim(-1, 1), T, B, name, self)


def _unfold_time(y: torch.Tensor, T: int, B: int, name: str, layout: Layout) -> torch.Tensor:
    """``[B or T*B, C, H, W]`` -> ``[T_out, B, C, H, W]``."""
    if y.shape[0] == T * B:
        return y.unflatten(0, (T, B))
    if y.shape[0] == B:
        return y.unsqueeze(0)
    raise LayoutError(
        f"layer {name!r}: layout {layout} reads a leading axis of {y.shape[0]}, which is neither the batch {B} nor "
        f"T*B = {T * B}"
    )


def _fit_grid(n: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The (h, w) with h * w = n and h : w = H : W exactly, or None."""
    if n < 1:
        return None
    H, W = input_hw
    g = math.gcd(H, W)
    a, b = H // g, W // g
    k = math.isqrt(n // (a * b)) if n % (a * b) == 0 else 0
    return (a * k, b * k) if k and a * k * b * k == n else None


_SPEC = re.compile(r"^(?P<kind>[A-Za-z]+)(?::(?P<h>\d+)x(?P<w>\d+)(?:\+(?P<p>\d+))?(?:/(?P<s>\d+)(?:/(?P<sh>\d+))?)?)?$")


def parse_layout(spec: str | Layout) -> Layout:
    """``"BHWC"``, ``"BNC:14x14+1"``, ``"windows:56x56/7/3"`` ... -> :class:`Layout` (see the module docstring)."""
    if isinstance(spec, Layout):
        return spec
    m = _SPEC.match(spec.strip())
    kind = m["kind"] if m else None
    kind = "windows" if kind and kind.lower() == "windows" else (kind.upper() if kind else None)
    if kind not in LAYOUT_KINDS:
        raise LayoutError(
            f"unknown layout {spec!r}; use one of {', '.join(LAYOUT_KINDS[:-1])} (tokens optionally with ':HxW+P'), "
            "or 'windows:HxW/SIDE[/SHIFT]'"
        )
    grid = (int(m["h"]), int(m["w"])) if m["h"] else None
    if kind == "windows":
        if grid is None or not m["s"] or m["p"]:
            raise LayoutError(f"write a window layout as 'windows:HxW/SIDE' or 'windows:HxW/SIDE/SHIFT', got {spec!r}")
        return Layout(kind, grid, 0, int(m["s"]), int(m["sh"] or 0))
    if m["s"] or (grid is not None and kind not in _TOKENS):
        raise LayoutError(f"layout {spec!r}: only token layouts take ':HxW+P' and only 'windows' takes '/SIDE'")
    return Layout(kind, grid, int(m["p"] or 0))
