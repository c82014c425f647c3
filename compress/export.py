"""Export a fusion model to ONNX graphs: one encoder graph per modality plus a fusion-head graph (so a runtime can
run encoders concurrently, skip a missing modality and cache an item's embedding), or one fused graph for any
`nn.Module` whose forward takes named tensors."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from edgefuse.runtime.manifest import ENCODER_INPUTS

__all__ = ["ExportedGraph", "export_fused", "export_split"]

_MODALITIES = ("image", "audio", "text")


@dataclass
class ExportedGraph:
    name: str
    role: str  # encoder | fusion | fused
    modality: str | None
    data: bytes
    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape with -1 batch, dtype)
    outputs: dict[str, tuple[tuple[int, ...], str]]


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.modality, dict(zip(ENCODER_INPUTS[self.modality], xs, strict=True)))


class _Fusion(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_token, audio_token, text_token, modality_mask):
        out = self.model.fuse(torch.stack([image_token, audio_token, text_token], 1), modality_mask)
        return out["logits"], out["contributions"]


class _Fused(nn.Module):
    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *xs: torch.Tensor):
        out = self.model(**dict(zip(self.names, xs, strict=True)))
        return (out["logits"], out["contributions"]) if isinstance(out, dict) else out


def _spec(t: torch.Tensor) -> tuple[tuple[int, ...], str]:
    return (-1, *t.shape[1:]), str(t.dtype).removeprefix("torch.")


def _to_onnx(module: nn.Module, args: tuple, in_names: list[str], out_names: list[str], opset: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter warns it is legacy; it is also the fast, exact one
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            buf,
            input_names=in_names,
            output_names=out_names,
            dynamic_axes={n: {0: "batch"} for n in [*in_names, *out_names]},
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


@torch.no_grad()
def export_split(model: nn.Module, example: dict[str, torch.Tensor], opset: int = 17) -> list[ExportedGraph]:
    """Per-modality encoder graphs + a fusion graph for a model with `encode(modality, inputs)` and
    `fuse(feats, mask)` (every edgefuse.models model). `example` holds every input with batch >= 2."""
    model = model.eval()
    graphs = []
    tokens = {}
    for m in _MODALITIES:
        names = ENCODER_INPUTS[m]
        args = tuple(example[n] for n in names)
        tok = model.encode(m, dict(zip(names, args, strict=True)))
        tokens[f"{m}_token"] = tok
        data = _to_onnx(_Encoder(model, m), args, list(names), ["token"], opset)
        graphs.append(
            ExportedGraph(
                f"{m}_encoder",
                "encoder",
                m,
                data,
                {n: _spec(a) for n, a in zip(names, args, strict=True)},
                {"token": _spec(tok)},
            )
        )
    fuse_in = {**tokens, "modality_mask": example["modality_mask"]}
    logits, contrib = _Fusion(model)(*fuse_in.values())
    data = _to_onnx(_Fusion(model), tuple(fuse_in.values()), list(fuse_in), ["logits", "contributions"], opset)
    graphs.append(
        ExportedGraph(
            "fusion",
            "fusion",
            None,
            data,
            {n: _spec(t) for n, t in fuse_in.items()},
            {"logits": _spec(logits), "contributions": _spec(contrib)},
        )
    )
    return graphs


@torch.no_grad()
def export_fused(model: nn.Module, example: dict[str, torch.Tensor], opset: int = 17) -> ExportedGraph:
    """One graph over all named inputs, for any module whose forward takes them as keywords."""
    model = model.eval()
    names = list(example)
    wrapper = _Fused(model, names)
    outs = wrapper(*example.values())
    outs = outs if isinstance(outs, tuple) else (outs,)
    out_names = (
        ["logits", "contributions"][: len(outs)] if len(outs) <= 2 else [f"output_{i}" for i in range(len(outs))]
    )
    data = _to_onnx(wrapper, tuple(example.values()), names, out_names, opset)
    return ExportedGraph(
        "fused",
        "fused",
        None,
        data,
        {n: _spec(t) for n, t in example.items()},
        {n: _spec(o) for n, o in zip(out_names, outs, strict=True)},
    )
