"""edgefuse runtime: runs a compressed bundle with numpy + onnxruntime or ai-edge-litert only.

Nothing here may import torch, tensorflow or transformers (a test checks it in a fresh interpreter)."""

__all__: list[str] = []
