"""The ST-ERF paper's ANN controls from timm: ViT-Tiny (GELU or ReLU), a 4-bit quantised-activation ViT, Swin-T,
PVT-v2-b0, PoolFormerV2-S12, or any other timm model, by name.

``build_timm("vit_tiny_patch16_224", img_size=64, act_layer="relu", act_bits=4)``: timm's own builder and random
initialisation (no download: ``pretrained=False``; a weights file loads through timm's ``load_checkpoint``), with

* ``act_layer``: timm's activation override (``"relu"`` gives the ReLU-ViT control; the authors fine-tuned that one
  for 20 epochs, so a random-init ReLU ViT is the architecture, not their weights);
* ``act_bits``: the input of every ``nn.Linear`` except the classifier is fake-quantised to ``act_bits``-bit
  integers times one step per layer (straight-through gradient inside the clipping range, 0 outside), as the
  ``ActQ`` of the Q-ViT model the authors used (``erf_sdt/models/q_vit/Quant.py`` of
  EricZhang1412/Spatial-temporal-ERF): signed levels -2^(b-1)..2^(b-1)-1, or 0..2^b-1 where the calibration input
  is never below -1e-5; step = LSQ's initial 2·mean|x|/√Q_p, set by :func:`calibrate_act_quant` on N(0, 1) noise
  (their zero point is left out);
* ``weight_bits``: those layers' weights rounded once to ``weight_bits``-bit levels of the step 2·mean|W|/√Q_p
  (their ``LinearQ`` at initialisation).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["build_timm", "ActQuant", "calibrate_act_quant", "TIMM_ERF_LAYERS", "timm_erf_layers"]

#: The modules the authors hooked per timm family (functions/erf.py of EricZhang1412/Spatial-temporal-ERF): the
#: attention-branch output before the residual add, PoolFormer's second norm.
TIMM_ERF_LAYERS = {
    "vit_": "blocks.*.attn.proj",
    "deit_": "blocks.*.attn.proj",
    "swin_": "layers.*.blocks.*.attn.proj",
    "pvt_v2_": "stages.*.blocks.*.attn.proj",
    "poolformer": "stages.*.blocks.*.norm2",
}


def timm_erf_layers(name: str) -> list[str]:
    """The paper's hooked layers (a glob) of timm model ``name``; ``ValueError`` for a family it did not show."""
    for prefix, glob in TIMM_ERF_LAYERS.items():
        if name.startswith(prefix):
            return [glob]
    raise ValueError(f"the ST-ERF paper hooked no layers of timm:{name}; pass --layers names or globs instead")


class ActQuant(nn.Module):
    """Signed uniform fake quantiser: ``clamp(round(x / step), -2^(b-1), 2^(b-1) - 1) * step``, STE gradient."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"act_bits must be in 2..16, got {bits}")
        self.bits = bits
        self.register_buffer("step", torch.tensor(float("nan")))
        self.register_buffer("signed", torch.tensor(True))
        self.observe = False
        self._sum, self._count, self._min = 0.0, 0, float("inf")

    def levels(self) -> tuple[int, int]:
        """(Q_n, Q_p): the lowest and highest integer level."""
        b = self.bits
        return (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if bool(self.signed) else (0, 2 ** b - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observe:
            self._sum += float(x.detach().abs().mean())
            self._count += 1
            self._min = min(self._min, float(x.detach().min()))
            return x
        if not torch.isfinite(self.step):
            raise RuntimeError("ActQuant has no step yet; run calibrate_act_quant(model, ...) or load a checkpoint")
        q_n, q_p = self.levels()
        xc = x.clamp(q_n * float(self.step), q_p * float(self.step))
        return xc + (torch.round(xc / self.step) * self.step - xc).detach()

    def set_step(self) -> None:
        """Sign and step from the observed inputs (LSQ's initial step)."""
        self.signed.fill_(self._min < -1e-5)
        self.step.fill_(2 * self._sum / max(self._count, 1) / self.levels()[1] ** 0.5)
        self.observe, self._sum, self._count, self._min = False, 0.0, 0, float("inf")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={bool(self.signed)}, step={float(self.step):.4g}"


def _quantised_linears(model: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` but the classifier ``head``."""
    return [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[0] != "head"]


def _add_act_quant(model: nn.Module, bits: int) -> None:
    """A pre-hook :class:`ActQuant` (child ``act_quant``) on every quantised linear layer."""
    for mod in _quantised_linears(model):
        mod.act_quant = ActQuant(bits)
        mod.register_forward_pre_hook(lambda m, args: (m.act_quant(args[0]), *args[1:]))


@torch.no_grad()
def _quantise_weights(model: nn.Module, bits: int) -> None:
    q_n, q_p = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    for mod in _quantised_linears(model):
        step = 2 * mod.weight.abs().mean() / q_p ** 0.5
        mod.weight.copy_((mod.weight / step).round().clamp(q_n, q_p) * step)


def calibrate_act_quant(model: nn.Module, input_size: Sequence[int], *, n_batches: int = 4, batch_size: int = 8,
                        seed: int = 0) -> int:
    """Set every :class:`ActQuant` step from N(0, 1) noise ``[B, *input_size]``; returns how many were set."""
    quants = [m for m in model.modules() if isinstance(m, ActQuant)]
    if not quants:
        return 0
    for q in quants:
        q.observe = True
    g = torch.Generator().manual_seed(seed)
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(n_batches):
                model(torch.randn((batch_size, *input_size), generator=g).to(device=p.device, dtype=p.dtype))
    finally:
        for q in quants:
            q.set_step()
        model.train(was_training)
    return len(quants)


def build_timm(name: str, *, img_size: int | Sequence[int] | None = None, checkpoint: str | None = None,
               act_bits: int | None = None, weight_bits: int | None = None, **options) -> nn.Module:
    """timm model ``name`` (random init unless ``checkpoint``), ``options`` passed to ``timm.create_model``.

    ``img_size`` is passed to models that take it (ViT, Swin: their position tables depend on it); the others take
    any input size. ``act_bits`` and ``weight_bits`` quantise as the module docstring says.
    """
    import timm

    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise ValueError(f"timm has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        model = timm.create_model(name, pretrained=False, **({"img_size": img_size} if img_size else {}), **options)
    except TypeError as err:
        if img_size is None or "img_size" not in str(err):
            raise TypeError(f"timm:{name}: {err}") from None
        model = timm.create_model(name, pretrained=False, **options)
    if act_bits is not None:
        _add_act_quant(model, int(act_bits))
    if checkpoint:
        from timm.models import load_checkpoint

        load_checkpoint(model, checkpoint, strict=True)
    if weight_bits is not None:
        _quantise_weights(model, int(weight_bits))
    return model
