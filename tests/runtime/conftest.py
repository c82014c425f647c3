"""A tiny real bundle for runtime tests: torch modules exported to real ONNX (and TFLite through litert-torch)
graphs, written with the runtime's own bundle writer. Built once per test session."""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgefuse.runtime.manifest import AudioSpec, GraphSpec, ImageSpec, Manifest, TensorSpec, TextSpec, write_bundle

D, CLASSES, SIDE, RATE, SAMPLES, TOKENS = 8, 10, 32, 8000, 8000, 16
LABELS = [str(i) for i in range(CLASSES)]


class ImageEnc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, stride=4), nn.Linear(4, D)

    def forward(self, image):
        return self.fc(torch.relu(self.conv(image)).mean(dim=(2, 3)))


class AudioEnc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(50, D)

    def forward(self, audio):
        return self.fc(audio.reshape(audio.shape[0], 50, -1).pow(2).mean(-1).sqrt())


class TextEnc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(30522, D), nn.Linear(D, D)

    def forward(self, text_ids, text_mask):
        m = text_mask.to(torch.float32)[..., None]
        return self.fc((self.emb(text_ids) * m).sum(1) / m.sum(1).clamp(min=1.0))


class Fusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.missing = nn.Parameter(torch.randn(3, D))
        self.gate, self.head = nn.Linear(D, 1), nn.Linear(D, CLASSES)

    def forward(self, image_token, audio_token, text_token, modality_mask):
        tok = torch.stack([image_token, audio_token, text_token], 1)  # (B, 3, D)
        m = modality_mask[..., None]
        tok = m * tok + (1 - m) * self.missing
        w = (self.gate(tok).squeeze(-1) + (1 - modality_mask) * -1e4).softmax(-1)
        return self.head((w[..., None] * tok).sum(1)), w


class Fused(nn.Module):
    def __init__(self, enc: dict, fusion: Fusion) -> None:
        super().__init__()
        self.enc, self.fusion = nn.ModuleDict(enc), fusion

    def forward(self, image, audio, text_ids, text_mask, modality_mask):
        return self.fusion(
            self.enc["image"](image), self.enc["audio"](audio), self.enc["text"](text_ids, text_mask), modality_mask
        )


def _specs(names_shapes: dict) -> dict:
    return {n: TensorSpec(tuple(s), dt) for n, (s, dt) in names_shapes.items()}


GRAPHS = {  # name -> (role, modality, inputs, outputs)
    "image_encoder": ("encoder", "image", {"image": ([-1, 3, SIDE, SIDE], "float32")}, {"token": ([-1, D], "float32")}),
    "audio_encoder": ("encoder", "audio", {"audio": ([-1, SAMPLES], "float32")}, {"token": ([-1, D], "float32")}),
    "text_encoder": (
        "encoder",
        "text",
        {"text_ids": ([-1, TOKENS], "int64"), "text_mask": ([-1, TOKENS], "int64")},
        {"token": ([-1, D], "float32")},
    ),
    "fusion": (
        "fusion",
        None,
        {
            **{f"{m}_token": ([-1, D], "float32") for m in ("image", "audio", "text")},
            "modality_mask": ([-1, 3], "float32"),
        },
        {"logits": ([-1, CLASSES], "float32"), "contributions": ([-1, 3], "float32")},
    ),
    "fused": (
        "fused",
        None,
        {
            "image": ([-1, 3, SIDE, SIDE], "float32"),
            "audio": ([-1, SAMPLES], "float32"),
            "text_ids": ([-1, TOKENS], "int64"),
            "text_mask": ([-1, TOKENS], "int64"),
            "modality_mask": ([-1, 3], "float32"),
        },
        {"logits": ([-1, CLASSES], "float32"), "contributions": ([-1, 3], "float32")},
    ),
}


def _example(inputs: dict, batch: int = 2) -> tuple:
    out = []
    for shape, dtype in inputs.values():
        s = (batch, *shape[1:])
        out.append(torch.randint(0, 2, s) if dtype == "int64" else torch.rand(s))
    return tuple(out)


def _onnx(module: nn.Module, inputs: dict, outputs: dict) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but fast for these tiny graphs
        warnings.simplefilter("ignore")
        _export(module, inputs, outputs, buf)
    return buf.getvalue()


def _export(module: nn.Module, inputs: dict, outputs: dict, buf: io.BytesIO) -> None:
    torch.onnx.export(
        module,
        _example(inputs),
        buf,
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]},
        opset_version=17,
        dynamo=False,
    )


def _tflite(module: nn.Module, inputs: dict, tmp: Path) -> bytes:
    import litert_torch

    path = tmp / "g.tflite"
    kwargs = dict(zip(inputs, _example(inputs, batch=1), strict=True))  # keyword samples keep the input names
    with warnings.catch_warnings():  # the converter's dependencies warn about their own internals
        warnings.simplefilter("ignore")
        litert_torch.convert(module.eval(), sample_kwargs=kwargs).export(str(path))
    return path.read_bytes()


def build_modules(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    enc = {"image": ImageEnc(), "audio": AudioEnc(), "text": TextEnc()}
    fusion = Fusion()
    return {
        "image_encoder": enc["image"],
        "audio_encoder": enc["audio"],
        "text_encoder": enc["text"],
        "fusion": fusion,
        "fused": Fused(enc, fusion),
    }


def tokenizer_json() -> bytes:
    from edgefuse.models.text import minilm_dir

    return (minilm_dir() / "tokenizer.json").read_bytes()


def make_bundle(out: Path, formats=("onnx",), seed: int = 0, as_zip: bool = False) -> Path:
    modules = {k: m.eval() for k, m in build_modules(seed).items()}
    files = {"tokenizer.json": tokenizer_json()}
    graphs = []
    for fmt in formats:
        for name, (role, modality, inputs, outputs) in GRAPHS.items():
            if fmt == "onnx":
                files[f"{name}.onnx"] = _onnx(modules[name], inputs, outputs)
            else:
                if name == "fused":
                    continue
                files[f"{name}.tflite"] = _tflite(modules[name], inputs, out.parent)
            graphs.append(
                GraphSpec(name, role, fmt, "fp32", f"{name}.{fmt}", _specs(inputs), _specs(outputs), modality=modality)
            )
    manifest = Manifest(
        name="tiny",
        labels=LABELS,
        graphs=graphs,
        files={},
        image=ImageSpec(height=SIDE, width=SIDE),
        audio=AudioSpec(sample_rate=RATE, samples=SAMPLES),
        text=TextSpec(tokenizer="tokenizer.json", max_tokens=TOKENS),
    )
    return write_bundle(out, manifest, files, as_zip=as_zip)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny", formats=("onnx", "tflite"))


@pytest.fixture()
def bundle_copy(bundle_dir, tmp_path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def sample_inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
        "audio": (rng.standard_normal(RATE) * 0.1).astype(np.float32),
        "text": "an odd number",
    }
