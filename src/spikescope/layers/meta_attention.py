"""Building blocks of the Meta-SDT family: SDT-v2 (Meta-SpikeFormer) and SDT-v3 (E-SpikeFormer), docs/papers.md#sdt-v2-and-sdt-v3-blocks.

Every block maps ``[T, B, C, H, W] -> [T, B, C, H, W]`` and is parametrised by a ``neuron`` factory (LIF for v2,
integer spikes for v3). Residual adds are on real-valued tensors; every branch starts with a spike ("membrane
shortcut").

===================================== ====================================================================================
:class:`SepConv`                      token mixer: SN -> 1x1 (C->2C) + BN -> SN -> dw kxk [+ BN -> SN] -> 1x1 (2C->C) + BN
:class:`RepConv`                      SDT-v2 re-parameterisable conv: 1x1 -> BN-and-pad -> dw 3x3 (no pad) -> 1x1 -> BN
:class:`MetaSpikeDrivenSelfAttention` SDSA of v2 (RepConv q/k/v/proj, V width C) and v3 (1x1, V width 4C)
:class:`MLP`                          SN -> Conv1d (C->rC, bias) + BN1d -> SN -> Conv1d (rC->C, bias) + BN1d on tokens
:class:`ConvBlock`                    x + SepConv_k(x), then x + channel_mixer(x)
:class:`TransformerBlock`             [x + SepConv_3(x) (v3)], x + Attn(x), x + MLP(x)
:class:`Downsample`                   [SN ->] Conv (bias) + BN
===================================== ====================================================================================
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn import ConvBN, NeuronFactory

__all__ = [
    "SepConv",
    "RepConv",
    "MetaSpikeDrivenSelfAttention",
    "MLP",
    "ConvBlock",
    "TransformerBlock",
    "Downsample",
]


class SepConv(nn.Module):
    """Inverted separable conv token mixer (MobileNetV2 style), expansion 2, kernel ``k``.

    ``dw_norm=True`` (SDT-v3): BN and a spike after the depthwise conv. ``dw_norm=False`` (SDT-v2): the depthwise
    conv feeds the second 1x1 conv directly. Keys: ``pw1.*``, ``dw.*``, ``pw2.*`` (each ``conv``/``bn``).
    """

    def __init__(
        self, dim: int, kernel_size: int, neuron: NeuronFactory, expansion: int = 2, dw_norm: bool = True
    ) -> None:
        super().__init__()
        mid = dim * expansion
        self.sn1 = neuron()
        self.pw1 = ConvBN(dim, mid, 1)
        self.sn2 = neuron()
        self.dw = ConvBN(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, norm=dw_norm)
        self.sn3 = neuron() if dw_norm else nn.Identity()
        self.pw2 = ConvBN(mid, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.sn1(x))
        x = self.dw(self.sn2(x))
        return self.pw2(self.sn3(x))


class _BNAndPad(nn.BatchNorm2d):
    """BatchNorm2d, then a 1-pixel border filled with what BN maps a zero input to (running statistics, detached).

    Keeps the 1x1 -> pad -> dw 3x3 chain of :class:`RepConv` exactly re-parameterisable into one 3x3 conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        w = self.weight.detach() if self.affine else 1.0
        b = self.bias.detach() if self.affine else 0.0
        fill = (b - self.running_mean * w / torch.sqrt(self.running_var + self.eps)).view(1, -1, 1, 1)
        return F.pad(y - fill, [1, 1, 1, 1]) + fill


class RepConv(nn.Module):
    """SDT-v2 RepConv on ``[T, B, C, H, W]``: 1x1 (C->C) -> BN-and-pad -> dw 3x3 (pad 0) -> 1x1 (C->out) -> BN.

    All convs bias-free; the spatial size is kept (the pad sits in the BN). Keys ``pw_in``, ``pad_bn``, ``dw``,
    ``pw_out``, ``bn``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.pw_in = nn.Conv2d(c_in, c_in, 1, bias=False)
        self.pad_bn = _BNAndPad(c_in)
        self.dw = nn.Conv2d(c_in, c_in, 3, groups=c_in, bias=False)
        self.pw_out = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.pw_out(self.dw(self.pad_bn(self.pw_in(x.flatten(0, 1))))))
        return y.unflatten(0, x.shape[:2])


class _RepConvBN(nn.Module):
    """RepConv followed by a further BatchNorm2d (SDT-v2 ``q_conv``/``k_conv``/...); keys ``conv.*``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = RepConv(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x).flatten(0, 1)).unflatten(0, x.shape[:2])


ProjFactory = Callable[[int, int], nn.Module]


def conv1x1_bn(c_in: int, c_out: int) -> nn.Module:
    """SDT-v3 projection: bias-free 1x1 conv + BN."""
    return ConvBN(c_in, c_out, 1)


def repconv_bn(c_in: int, c_out: int) -> nn.Module:
    """SDT-v2 projection: RepConv + BN."""
    return _RepConvBN(c_in, c_out)


class MetaSpikeDrivenSelfAttention(nn.Module):
    """Spike-driven self-attention on ``[T, B, C, H, W]`` (N = H*W tokens, ``heads`` heads).

    x' = SN(x); Q = SN(P_q(x')), K = SN(P_k(x')) (C channels), V = SN(P_v(x')) (``v_ratio``*C channels);
    A = Q (K^T V) * scale per head; out = P_o(SN_attn(A)).

    SDT-v2: ``proj=repconv_bn``, ``v_ratio=1``, ``scale=0.125``, ``attn_neuron`` a LIF with threshold 0.5.
    SDT-v3: ``proj=conv1x1_bn``, ``v_ratio=4``, ``scale=2 / sqrt(C/heads)``.

    The product is evaluated as Q (K^T V) (cost N*d*d_v per head) rather than the released (Q K^T) V (N^2*(d+d_v),
    an N x N matrix): the same value up to float rounding, linear in N in time and memory.
    Keys: ``q``, ``k``, ``v``, ``proj``.
    """

    def __init__(
        self,
        dim: int,
        neuron: NeuronFactory,
        attn_neuron: NeuronFactory | None = None,
        heads: int = 8,
        v_ratio: int = 1,
        scale: float | None = None,
        proj: ProjFactory = conv1x1_bn,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"MetaSpikeDrivenSelfAttention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = float(scale) if scale is not None else 2.0 * (dim // heads) ** -0.5
        v_dim = dim * v_ratio
        self.sn_in = neuron()
        self.q = proj(dim, dim)
        self.k = proj(dim, dim)
        self.v = proj(dim, v_dim)
        self.sn_q = neuron()
        self.sn_k = neuron()
        self.sn_v = neuron()
        self.sn_attn = (attn_neuron or neuron)()
        self.proj = proj(v_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.sn_in(x)
        # channel-first per head: [T, B, heads, d, N]; channel c = head * d + j, as in the released reshape
        q = self.sn_q(self.q(x)).reshape(T, B, self.heads, -1, H * W)
        k = self.sn_k(self.k(x)).reshape(T, B, self.heads, -1, H * W)
        v = self.sn_v(self.v(x)).reshape(T, B, self.heads, -1, H * W)
        kv = v @ k.transpose(-1, -2)  # (K^T V)^T: [.., d_v, d]
        a = (kv @ q) * self.scale  # (Q K^T V)^T: [.., d_v, N]
        a = self.sn_attn(a.reshape(T, B, -1, H, W))
        return self.proj(a)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale:.4g}"


class MLP(nn.Module):
    """Token MLP: SN -> Conv1d (C->rC, bias) + BN1d -> SN -> Conv1d (rC->C, bias) + BN1d; keys ``fc1.*``, ``fc2.*``."""

    def __init__(self, dim: int, ratio: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.sn1 = neuron()
        self.fc1 = ConvBN(dim, dim * ratio, 1, bias=True, dims=1)
        self.sn2 = neuron()
        self.fc2 = ConvBN(dim * ratio, dim, 1, bias=True, dims=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(self.sn1(x.flatten(3)))
        return self.fc2(self.sn2(y)).reshape(x.shape)


class ConvBlock(nn.Module):
    """x <- x + SepConv_k(x); x <- x + channel_mixer(x). Keys ``token_mixer.*``, ``channel_mixer.*``."""

    def __init__(self, token_mixer: nn.Module, channel_mixer: nn.Module) -> None:
        super().__init__()
        self.token_mixer = token_mixer
        self.channel_mixer = channel_mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mixer(x)
        return x + self.channel_mixer(x)


class TransformerBlock(nn.Module):
    """[x <- x + SepConv_3(x)] (SDT-v3 only); x <- x + Attn(x); x <- x + MLP(x). Keys ``token_mixer``, ``attn``, ``mlp``."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, token_mixer: nn.Module | None = None) -> None:
        super().__init__()
        self.token_mixer = token_mixer
        self.attn = attn
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_mixer is not None:
            x = x + self.token_mixer(x)
        x = x + self.attn(x)
        return x + self.mlp(x)


class Downsample(ConvBN):
    """[SN ->] Conv kxk (stride s, padding k//2, bias) + BN; the stem has no spike before it. Keys ``conv.*``, ``bn.*``."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, neuron: NeuronFactory | None
    ) -> None:
        super().__init__(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=True)
        self.sn = neuron() if neuron is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.sn(x))
