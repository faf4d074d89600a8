"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` (timm-style, with input metadata).

Model files register a builder per size::

    @register_model("sdt_v3_s", input_size=(3, 224, 224), timesteps=1, family="sdt_v3")
    def sdt_v3_s(**overrides) -> nn.Module: ...

Variant choices (``mixer="srb"``, ``sma=True``, ``T=4``) are keyword overrides of the builder, never separate names.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import yaml
from torch import nn

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "example_input",
    "count_parameters",
    "apply_overrides",
    "parse_overrides",
    "parse_value",
    "split_options",
    "register_sizes",
]

InputKind = Literal["image", "events"]


@dataclass(frozen=True)
class ModelInfo:
    """What a user needs to know to feed a registered model."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (C, H, W) of one frame
    timesteps: int  # default T
    input_kind: InputKind  # "image": [B,C,H,W] (repeated over T inside); "events": [T,B,C,H,W]
    family: str
    description: str
    variants: tuple[dict, ...] = ()  # option sets worth listing, e.g. ({"mixer": "conv"}, {"mixer": "srb"})

    @property
    def input_layout(self) -> str:
        c, h, w = self.input_size
        if self.input_kind == "events":
            return f"[T={self.timesteps},B,{c},{h},{w}]"
        return f"[B,{c},{h},{w}] (T={self.timesteps})"


class UnknownModelError(ValueError):
    """Raised by :func:`create_model` for a name that is not registered."""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    input_size: tuple[int, int, int],
    timesteps: int,
    input_kind: InputKind = "image",
    family: str = "",
    variants: tuple[dict, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name`` with its input metadata.

    ``variants`` lists option sets that ``spikescope models`` shows as rows of their own (e.g. each mixer).
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        doc = (inspect.getdoc(builder) or "").split("\n")[0]
        _REGISTRY[name] = ModelInfo(name, builder, tuple(input_size), timesteps, input_kind, family, doc,
                                    tuple(variants))
        return builder

    return decorate


def _ensure_loaded() -> None:
    from . import _zoo  # noqa: F401  (imports every model file, which registers its builders)


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered name; unknown names list the closest registered ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "run `spikescope models` to list them"
        raise UnknownModelError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a glob ``pattern``."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


class _InputCheck:
    """Forward pre-hook: the model's input must be a tensor without NaN/inf (``model.check_inputs = False`` skips
    the finiteness pass). A NaN input would otherwise read as "no spike" and give a finite, wrong output."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if not args:
            return
        x = args[0]
        if not isinstance(x, torch.Tensor):
            kind = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
            raise TypeError(f"{self.name}: the input must be a torch.Tensor, got {kind}; convert it with "
                            "torch.as_tensor(x, dtype=torch.float32)")
        if getattr(module, "check_inputs", True) and x.is_floating_point() and x.device.type != "meta":
            bad = (~torch.isfinite(x)).sum()
            if bad.item():
                raise ValueError(f"{self.name}: the input holds {bad.item()} NaN/inf values of {x.numel()} (a model "
                                 "would read them as 'no spike'); clean the data, or set model.check_inputs = False "
                                 "(create_model(..., check_inputs=False)) to skip this check")


def create_model(name: str, pretrained: str | None = None, check_inputs: bool = True, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` go to its builder, ``pretrained`` is a checkpoint path to load.

    The model refuses inputs that are not tensors and, unless ``check_inputs=False`` (or later
    ``model.check_inputs = False``), inputs holding NaN/inf values.
    """
    info = model_info(name)
    accepted = inspect.signature(info.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = [k for k in overrides if k not in accepted] if not takes_any else []
    if unknown:
        options = [k for k, p in accepted.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise TypeError(f"{name}: unknown option(s) {unknown}; this model accepts {options}")
    model = info.builder(**overrides)
    model.check_inputs = check_inputs
    model.register_forward_pre_hook(_InputCheck(name))
    if pretrained is not None:
        from .checkpoints import load_checkpoint

        load_checkpoint(model, pretrained)
    return model


def split_options(text: str) -> list[str]:
    """``"a=1,widths=[16,32],b=x"`` -> ``["a=1", "widths=[16,32]", "b=x"]``: split on commas outside brackets.

    Unbalanced ``[]`` / ``{}`` / ``()`` raise ``ValueError`` naming the text.
    """
    parts, depth, start = [], [], 0
    pairs = {"]": "[", "}": "{", ")": "("}
    for i, ch in enumerate(text):
        if ch in "[{(":
            depth.append(ch)
        elif ch in pairs:
            if not depth or depth.pop() != pairs[ch]:
                raise ValueError(f"unbalanced {ch!r} in options {text!r}")
        elif ch == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unclosed {depth[-1]!r} in options {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_overrides(items: Sequence[str] | str | None) -> dict[str, Any]:
    """``["mixer=srb", "T=4", "widths=[16,32]"]`` (``--set`` values) -> ``{"mixer": "srb", "T": 4, "widths": [16, 32]}``.

    Values are YAML-typed. A single string is first split on its top-level commas (:func:`split_options`), as in
    the ``NAME:k=v,...`` model specs. A malformed item raises a one-line ``ValueError`` naming it.
    """
    if isinstance(items, str):
        items = split_options(items)
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        try:
            out[key.strip()] = parse_value(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"cannot parse the value of {item!r}: {problem} (a list is written k=[1,2])") from None
    return out


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def parse_value(raw: str) -> Any:
    """A ``--set`` value parsed as YAML, except that every number a user would type is a number: YAML 1.1 reads
    ``1e-3``, ``1e9`` and ``inf`` as strings, here they are floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def apply_overrides(config, overrides: dict, who: str):
    """``dataclasses.replace(config, **overrides)`` with an error naming unknown keys and the accepted ones.

    Builders of a family call it with their size's config: ``SDTv3Config`` fields are the model's options.
    """
    names = [f.name for f in dataclasses.fields(config)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise TypeError(f"{who}: unknown option(s) {unknown}; this model accepts {names}")
    _check_option_types(type(config), overrides, who)
    return dataclasses.replace(config, **overrides)


_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def _check_option_types(cls: type, overrides: dict, who: str) -> None:
    """Scalar options (``int``, ``float``, ``bool``, ``str`` fields) of the wrong type raise naming the option."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: leave the check to the model
        return
    for key, value in overrides.items():
        accepted = _SCALARS.get(hints.get(key))
        if accepted and (not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted)):
            raise TypeError(f"{who}: option {key}={value!r} must be {hints[key].__name__}, not "
                            f"{type(value).__name__}")


def register_sizes(
    model_cls: Callable[[Any], nn.Module],
    sizes: dict[str, Any],
    *,
    family: str,
    describe: Callable[[str, Any], str],
    input_size: tuple[int, int, int] = (3, 224, 224),
    input_kind: InputKind = "image",
    time_field: str = "timesteps",
    variants: tuple[dict, ...] = (),
) -> None:
    """Register ``model_cls(config)`` under every ``name -> config`` of ``sizes`` (T read from ``time_field``).

    The builders take the config's fields as overrides (:func:`apply_overrides`); ``describe(name, config)`` gives
    each one's docstring, the description ``spikescope models`` shows; ``variants`` as in :func:`register_model`.
    """
    for name, cfg in sizes.items():
        register_model(name, input_size=input_size, timesteps=getattr(cfg, time_field), input_kind=input_kind,
                       family=family, variants=variants)(_size_builder(model_cls, name, cfg, describe(name, cfg)))


def _size_builder(model_cls: Callable[[Any], nn.Module], name: str, cfg: Any, doc: str) -> Callable[..., nn.Module]:
    """``builder(**overrides) -> model_cls(apply_overrides(cfg, overrides))``, named and documented as ``name``."""

    def builder(**overrides) -> nn.Module:
        return model_cls(apply_overrides(cfg, overrides, name))

    builder.__name__, builder.__doc__ = name, doc
    builder.__module__ = model_cls.__module__  # the family module (its ERF_LAYERS, PAPER_PARAMS, ...)
    return builder


def count_parameters(name: str, **overrides) -> int:
    """Parameter count of a registered model, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


def example_input(name: str, batch: int = 1, timesteps: int | None = None, **kwargs) -> torch.Tensor:
    """A random input in the model's layout: ``[B,C,H,W]`` for images, ``[T,B,C,H,W]`` for events."""
    info = model_info(name)
    if info.input_kind == "events":
        T = timesteps or info.timesteps
        return torch.rand(T, batch, *info.input_size, **kwargs)
    return torch.randn(batch, *info.input_size, **kwargs)
