"""Write a bundle (the runtime's format, `edgefuse.runtime.manifest`) from a torch fusion model."""

from __future__ import annotations

import contextlib
import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from edgefuse.runtime.manifest import AudioSpec, GraphSpec, ImageSpec, Manifest, TensorSpec, TextSpec, write_bundle

from .export import ExportedGraph, export_fused, export_split

__all__ = ["avt_specs", "example_inputs", "write_avt_bundle", "write_model_bundle"]


def example_inputs(image: ImageSpec, audio: AudioSpec, text: TextSpec, batch: int = 2) -> dict[str, torch.Tensor]:
    """Named example inputs matching the specs (all modalities present)."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, text.max_tokens, dtype=torch.int64)
    mask[:, :4] = 1
    return {
        "image": torch.rand(batch, image.channels, image.height, image.width, generator=g),
        "audio": torch.randn(batch, audio.samples, generator=g) * 0.1,
        "text_ids": torch.randint(1000, 2000, (batch, text.max_tokens), generator=g) * mask,
        "text_mask": mask,
        "modality_mask": torch.ones(batch, 3),
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("edgefuse", "torch", "onnx", "onnxruntime", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def write_model_bundle(
    model: nn.Module,
    out: str | Path,
    *,
    labels: list[str],
    image: ImageSpec,
    audio: AudioSpec,
    text: TextSpec,
    tokenizer_json: bytes,
    name: str = "model",
    fused: bool = False,
    extra_graphs: list[tuple[ExportedGraph, str, str]] = (),
    metrics: dict | None = None,
    provenance: dict | None = None,
    as_zip: bool = False,
) -> Path:
    """Export `model` (fp32 ONNX: encoders + fusion, and the fused graph if `fused`) and write the bundle.

    `extra_graphs` adds already-made graphs as (graph, format, precision), e.g. int8 or TFLite variants."""
    example = example_inputs(image, audio, text)
    made = [(g, "onnx", "fp32") for g in export_split(model, example)]
    if fused:
        made.append((export_fused(model, example), "onnx", "fp32"))
    made += list(extra_graphs)
    files = {text.tokenizer: tokenizer_json}
    graphs = []
    for g, fmt, precision in made:
        file = f"{g.name}.{precision}.{fmt}"
        files[file] = g.data
        graphs.append(
            GraphSpec(
                name=g.name,
                role=g.role,
                format=fmt,
                precision=precision,
                file=file,
                inputs={k: TensorSpec(*v) for k, v in g.inputs.items()},
                outputs={k: TensorSpec(*v) for k, v in g.outputs.items()},
                modality=g.modality,
            )
        )
    manifest = Manifest(
        name=name,
        labels=list(labels),
        graphs=graphs,
        files={},
        image=image,
        audio=audio,
        text=text,
        metrics=metrics or {},
        provenance={
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
            **(provenance or {}),
        },
    )
    return write_bundle(out, manifest, files, as_zip=as_zip)


def avt_specs() -> dict:
    """The default task's input specs: RGB 64x64, 1 s at 16 kHz, 16 MiniLM tokens."""
    from edgefuse.models import SAMPLE_RATE

    return {
        "image": ImageSpec(height=64, width=64),
        "audio": AudioSpec(sample_rate=SAMPLE_RATE, samples=SAMPLE_RATE),
        "text": TextSpec(tokenizer="tokenizer.json", max_tokens=16),
    }


def write_avt_bundle(model: nn.Module, out: str | Path, **kwargs) -> Path:
    """`write_model_bundle` with the AVT-Digits input specs, labels and MiniLM tokenizer (the default task)."""
    from edgefuse.models import LABELS
    from edgefuse.models.text import minilm_dir

    tokenizer = (minilm_dir() / "tokenizer.json").read_bytes()
    return write_model_bundle(model, out, labels=list(LABELS), tokenizer_json=tokenizer, **avt_specs(), **kwargs)
