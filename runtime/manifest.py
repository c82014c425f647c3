"""The bundle manifest: the one definition of the contract between `compress` (writer) and the runtime (reader).

A bundle is a directory, or the same tree zipped, holding `manifest.json` and every file it lists. The manifest
names the modalities and their input specs, every graph (role, format, precision, inputs/outputs), the labels,
measured metrics and provenance, and the sha256 and size of every file. Readers check all of it before running
anything; nothing in a bundle is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BundleError

__all__ = [
    "ENCODER_INPUTS",
    "FORMATS",
    "PRECISIONS",
    "ROLES",
    "SCHEMA",
    "AudioSpec",
    "Bundle",
    "GraphSpec",
    "ImageSpec",
    "Manifest",
    "TensorSpec",
    "TextSpec",
    "sha256",
    "write_bundle",
]

SCHEMA = "edgefuse.bundle/1"
ROLES = ("encoder", "fusion", "fused")
FORMATS = ("onnx", "tflite")
# int8 = integer weights and activations; int8-weights = weight-only int8, float compute; mixed = some ops kept fp32.
PRECISIONS = ("fp32", "fp16", "int8", "int8-weights", "mixed")
MODALITIES = ("image", "audio", "text")
# The graph contract: each modality's encoder graph takes these inputs and returns `token` (B, D).
ENCODER_INPUTS = {"image": ("image",), "audio": ("audio",), "text": ("text_ids", "text_mask")}
DTYPES = ("float32", "int64", "int32", "int8", "uint8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _need(cond: bool, name: str, problem: str) -> None:
    if not cond:
        raise BundleError(f"manifest.json: {name}", problem)


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]  # -1 = dynamic (the batch)
    dtype: str

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TensorSpec:
        _need(isinstance(d, dict) and "shape" in d and "dtype" in d, where, "needs 'shape' and 'dtype'")
        _need(all(isinstance(s, int) for s in d["shape"]), f"{where}.shape", f"must be integers, got {d['shape']}")
        _need(d["dtype"] in DTYPES, f"{where}.dtype", f"must be one of {DTYPES}, got {d['dtype']!r}")
        return cls(tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    channels: int = 3
    layout: str = "NCHW"
    scale: float = 1 / 255  # pixel value -> model input: (pixel * scale - mean) / std
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class AudioSpec:
    sample_rate: int
    samples: int  # fixed length: longer audio is trimmed, shorter zero-padded


@dataclass(frozen=True)
class TextSpec:
    tokenizer: str  # file in the bundle (tokenizers' tokenizer.json)
    max_tokens: int
    vocab_remap: str | None = None  # .npy int32 file: original token id -> pruned id (-1 = dropped)
    unknown_id: int = 100  # pruned id used for tokens the remap dropped ([UNK])


@dataclass(frozen=True)
class GraphSpec:
    name: str
    role: str  # encoder | fusion | fused
    format: str  # onnx | tflite
    precision: str
    file: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    modality: str | None = None  # for encoders
    preferred: bool = True  # the variant the runtime picks for this (format, role, modality) by default

    @classmethod
    def from_dict(cls, d: Any, where: str) -> GraphSpec:
        _need(isinstance(d, dict), where, "must be an object")
        for k in ("name", "role", "format", "precision", "file", "inputs", "outputs"):
            _need(k in d, f"{where}.{k}", "is missing")
        _need(d["role"] in ROLES, f"{where}.role", f"must be one of {ROLES}, got {d['role']!r}")
        _need(d["format"] in FORMATS, f"{where}.format", f"must be one of {FORMATS}, got {d['format']!r}")
        _need(d["precision"] in PRECISIONS, f"{where}.precision", f"must be one of {PRECISIONS}")
        if d["role"] == "encoder":
            _need(d.get("modality") in MODALITIES, f"{where}.modality", f"an encoder needs one of {MODALITIES}")
        return cls(
            name=d["name"],
            role=d["role"],
            format=d["format"],
            precision=d["precision"],
            file=d["file"],
            inputs={k: TensorSpec.from_dict(v, f"{where}.inputs.{k}") for k, v in d["inputs"].items()},
            outputs={k: TensorSpec.from_dict(v, f"{where}.outputs.{k}") for k, v in d["outputs"].items()},
            modality=d.get("modality"),
            preferred=bool(d.get("preferred", True)),
        )


@dataclass
class Manifest:
    name: str
    labels: list[str]
    graphs: list[GraphSpec]
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "size_bytes"}
    image: ImageSpec | None = None
    audio: AudioSpec | None = None
    text: TextSpec | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # measured accuracy / parity per artifact
    provenance: dict[str, Any] = field(default_factory=dict)  # recipe, versions, date
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a plain JSON tree

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        _need(isinstance(d, dict), "(root)", "must be a JSON object")
        _need(d.get("schema") == SCHEMA, "schema", f"expected {SCHEMA!r}, got {d.get('schema')!r}")
        for k in ("name", "labels", "graphs", "files"):
            _need(k in d, k, "is missing")
        _need(isinstance(d["labels"], list) and len(d["labels"]) > 1, "labels", "needs at least two labels")
        _need(isinstance(d["graphs"], list) and d["graphs"], "graphs", "needs at least one graph")
        graphs = [GraphSpec.from_dict(g, f"graphs[{i}]") for i, g in enumerate(d["graphs"])]
        files = d["files"]
        _need(isinstance(files, dict), "files", "must map paths to {sha256, size_bytes}")
        for path, meta in files.items():
            _safe_path(path)
            _need(
                isinstance(meta, dict) and {"sha256", "size_bytes"} <= set(meta),
                f"files[{path!r}]",
                "needs sha256, size_bytes",
            )
        for i, g in enumerate(graphs):
            _need(g.file in files, f"graphs[{i}].file", f"{g.file!r} is not listed in files")
        specs = {}
        for kind, spec_cls in (("image", ImageSpec), ("audio", AudioSpec), ("text", TextSpec)):
            if d.get(kind) is not None:
                try:
                    specs[kind] = spec_cls(**d[kind])
                except TypeError as e:
                    raise BundleError(f"manifest.json: {kind}", str(e)) from e
        if "text" in specs:
            _need(specs["text"].tokenizer in files, "text.tokenizer", "the tokenizer file is not listed in files")
        return cls(
            name=d["name"],
            labels=list(d["labels"]),
            graphs=graphs,
            files=files,
            metrics=d.get("metrics", {}),
            provenance=d.get("provenance", {}),
            **specs,
        )


def _safe_path(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path or not p.parts:
        raise BundleError(
            path, "is outside the bundle (absolute or '..' path)", "refusing to read it; use a trusted bundle"
        )
    return path


class Bundle:
    """An opened, verified bundle: the manifest plus every listed file's bytes, each checked against its sha256."""

    def __init__(self, manifest: Manifest, blobs: dict[str, bytes], source: str) -> None:
        self.manifest, self._blobs, self.source = manifest, blobs, source

    def read(self, name: str) -> bytes:
        return self._blobs[name]

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        path = Path(path)
        if not path.exists():
            raise BundleError(str(path), "does not exist", "pass a bundle directory or .zip written by edgefuse")
        if path.is_dir():
            read = lambda name: (path / _safe_path(name)).read_bytes()
            names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            return cls._verify(read, names, str(path))
        if not zipfile.is_zipfile(path):
            raise BundleError(str(path), "is neither a directory nor a zip file", "pass the bundle folder or its .zip")
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                _safe_path(n)
            root = _zip_root(z.namelist())
            names = {n[len(root) :] for n in z.namelist() if not n.endswith("/")}
            return cls._verify(lambda name: z.read(root + name), names, str(path))

    @classmethod
    def _verify(cls, read, names: set[str], source: str) -> Bundle:
        if "manifest.json" not in names:
            raise BundleError(f"{source}/manifest.json", "is missing", "this is not an edgefuse bundle")
        try:
            manifest = Manifest.from_dict(json.loads(read("manifest.json")))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError("manifest.json", f"is not valid JSON ({e})") from e
        blobs = {}
        for name, meta in manifest.files.items():
            if name not in names:
                raise BundleError(name, "is listed in the manifest but missing from the bundle")
            data = read(name)
            if len(data) != meta["size_bytes"] or sha256(data) != meta["sha256"]:
                raise BundleError(name, "does not match its sha256 in the manifest (corrupt or tampered)")
            blobs[name] = data
        return cls(manifest, blobs, source)


def _zip_root(names: list[str]) -> str:
    """'' when manifest.json is at the top of the zip, else the single folder that holds it."""
    if "manifest.json" in names:
        return ""
    tops = [n for n in names if n.endswith("/manifest.json") and n.count("/") == 1]
    return tops[0][: -len("manifest.json")] if len(tops) == 1 else ""


def write_bundle(out: str | Path, manifest: Manifest, files: dict[str, bytes], as_zip: bool = False) -> Path:
    """Write `files` and a manifest listing each one's sha256 and size; `as_zip` writes `out` as one .zip.

    `manifest.files` is filled here, so a writer cannot list a hash that does not match its bytes."""
    for name in files:
        _safe_path(name)
    manifest.files = {n: {"sha256": sha256(b), "size_bytes": len(b)} for n, b in sorted(files.items())}
    Manifest.from_dict(manifest.to_dict())  # the reader's validation, before anything is written
    blob = json.dumps(manifest.to_dict(), indent=2).encode()
    out = Path(out)
    if as_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", blob)
            for name, data in files.items():
                z.writestr(name, data)
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / "manifest.json").write_bytes(blob)
    return out
