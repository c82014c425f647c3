"""torch model -> ONNX bundle -> runtime Engine gives the torch answer, for every fusion kind and missing subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefuse.compress.bundle import write_avt_bundle
from edgefuse.models import MODALITIES, create_model
from edgefuse.models.text import Tokenizer
from edgefuse.runtime import Bundle, SyncEngine


def _request(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "audio": (rng.standard_normal(16000) * 0.2).astype(np.float32),
        "text": "a digit with a closed loop",
    }


def _torch_probs(model, req: dict) -> np.ndarray:
    x = {}
    if "image" in req:
        x["image"] = torch.from_numpy(req["image"].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    if "audio" in req:
        x["audio"] = torch.from_numpy(req["audio"][None])
    if "text" in req:
        ids, mask = Tokenizer(max_tokens=16).encode([req["text"]])
        x["text_ids"], x["text_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.inference_mode():
        return model(**x)["logits"].softmax(-1)[0].numpy()


@pytest.mark.parametrize("fusion", ["concat", "gated", "attention"])
def test_onnx_bundle_matches_torch(tmp_path, fusion):
    torch.manual_seed(0)
    model = create_model("avt-fusion", fusion=fusion, text_dim=64, text_depth=1).eval()
    path = write_avt_bundle(model, tmp_path / "b", name="t", fused=True)
    bundle = Bundle.open(path)
    roles = sorted(g.role for g in bundle.manifest.graphs)
    assert roles == ["encoder", "encoder", "encoder", "fused", "fusion"]
    with SyncEngine.load(bundle) as engine:
        for seed, keep in enumerate([MODALITIES, ("image",), ("audio", "text"), ("text",)]):
            req = {k: v for k, v in _request(seed).items() if k in keep}
            got = np.array(list(engine.infer(**req).probabilities.values()))
            np.testing.assert_allclose(got, _torch_probs(model, req), atol=1e-4)
