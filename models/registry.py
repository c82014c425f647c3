"""A registry of reference models: `list_models(pattern)`, `create_model(name, **cfg)`.

Every created model remembers `(name, cfg)` in `model.edgefuse_config`, which is all a checkpoint needs to
rebuild it before loading weights (no pickled code)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from .encoders import AudioEncoder, ImageEncoder
from .errors import InputError
from .multimodal import MultimodalClassifier
from .text import TextEncoder

__all__ = ["create_model", "list_models", "register"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **cfg: object) -> nn.Module:
    if name not in _REGISTRY:
        raise InputError("name", f"no model called {name!r}", f"choose from {list_models()}")
    try:
        model = _REGISTRY[name](**cfg)
    except TypeError as e:  # an unknown keyword: say which model and what it takes
        raise InputError("cfg", f"{name}: {e}", "see the factory's signature in edgefuse.models.registry") from e
    model.edgefuse_config = {"name": name, "cfg": dict(cfg)}
    return model


@register("avt-teacher")
def avt_teacher(pretrained: bool = True, fusion: str = "attention", dim: int = 384, max_tokens: int = 64) -> nn.Module:
    """The large teacher (~28 M params): pretrained MiniLM-L6 text tower, wide CNN towers, attention fusion.

    `pretrained=False` builds the same shapes without reading MiniLM (used when a checkpoint supplies weights)."""
    text = TextEncoder.pretrained_minilm(max_tokens) if pretrained else TextEncoder(max_tokens=max_tokens)
    return MultimodalClassifier(
        ImageEncoder(widths=(48, 96, 192, 384)),
        AudioEncoder(widths=(48, 96, 192, 384)),
        text,
        fusion=fusion,
        dim=dim,
        fusion_cfg={"depth": 2, "heads": 6} if fusion == "attention" else None,
    )


@register("avt-fusion")
def avt_fusion(
    fusion: str = "attention",
    dim: int = 128,
    image_widths: tuple[int, ...] = (16, 32, 64, 128),
    audio_widths: tuple[int, ...] = (16, 32, 64, 128),
    text_dim: int = 128,
    text_depth: int = 2,
    text_heads: int = 4,
    vocab: int = 30522,
    max_tokens: int = 64,
) -> nn.Module:
    """A small, randomly initialised fusion model of any kind (students, tests, users' own tasks)."""
    return MultimodalClassifier(
        ImageEncoder(widths=tuple(image_widths)),
        AudioEncoder(widths=tuple(audio_widths)),
        TextEncoder(
            vocab=vocab, dim=text_dim, depth=text_depth, heads=text_heads, ffn=4 * text_dim, max_tokens=max_tokens
        ),
        fusion=fusion,
        dim=dim,
        fusion_cfg={"depth": 1, "heads": 4} if fusion == "attention" else None,
    )
