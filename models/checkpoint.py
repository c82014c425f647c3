"""Checkpoints as `config.json` + `model.safetensors`: loading never unpickles code."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .errors import InputError
from .registry import create_model

__all__ = ["checkpoint_meta", "load_checkpoint", "rebuild", "save_checkpoint"]


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write `path/config.json` (registry name + cfg + meta) and `path/model.safetensors`."""
    from safetensors.torch import save_file

    config = getattr(model, "edgefuse_config", None)
    if config is None:
        raise InputError("model", "was not made by edgefuse.models.create_model", "build it with create_model()")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({**config, "meta": meta or {}}, indent=2))
    return path


def rebuild(config: dict) -> nn.Module:
    """The registry model a saved `config.json` names, with untrained weights (the caller loads its own)."""
    cfg = dict(config["cfg"])
    if config["name"] == "avt-teacher":
        cfg["pretrained"] = False  # don't read MiniLM's weights only to overwrite them
    model = create_model(config["name"], **cfg)
    model.edgefuse_config = {"name": config["name"], "cfg": config["cfg"]}
    return model


def load_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild the model from its registry entry and load its weights (strict)."""
    from safetensors.torch import load_file

    path = Path(path)
    for f in ("config.json", "model.safetensors"):
        if not (path / f).is_file():
            raise InputError("path", f"{path / f} does not exist", "point at a folder written by save_checkpoint()")
    model = rebuild(json.loads((path / "config.json").read_text()))
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return model.eval()


def checkpoint_meta(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text()).get("meta", {})
