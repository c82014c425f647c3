"""edgefuse runtime: runs a compressed bundle with numpy + onnxruntime or ai-edge-litert only.

    from edgefuse.runtime import Engine
    engine = Engine.load("bundle/", backend="onnx")
    result = await engine.infer(image="digit.png", audio="digit.wav", text="an odd number")

Nothing here may import torch, tensorflow or transformers (a test checks it in a fresh interpreter)."""

from .backends import BACKENDS, Backend, create_backend
from .engine import MODALITIES, Engine, Result, SyncEngine
from .errors import BackendError, BundleError, DeadlineExceeded, EdgefuseError, EngineClosed, InputError, Overloaded
from .manifest import SCHEMA, AudioSpec, Bundle, GraphSpec, ImageSpec, Manifest, TensorSpec, TextSpec, write_bundle

__all__ = [
    "BACKENDS",
    "MODALITIES",
    "SCHEMA",
    "AudioSpec",
    "Backend",
    "BackendError",
    "Bundle",
    "BundleError",
    "DeadlineExceeded",
    "EdgefuseError",
    "Engine",
    "EngineClosed",
    "GraphSpec",
    "ImageSpec",
    "InputError",
    "Manifest",
    "Overloaded",
    "Result",
    "SyncEngine",
    "TensorSpec",
    "TextSpec",
    "create_backend",
    "write_bundle",
]
