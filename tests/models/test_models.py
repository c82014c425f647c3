import itertools
from functools import cache

import numpy as np
import pytest
import torch

from edgefuse.models import InputError, create_model, list_models, load_checkpoint, save_checkpoint
from edgefuse.models.fusion import FUSIONS
from edgefuse.models.multimodal import MODALITIES

B = 3
SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]


@cache
def _model(name: str, fusion: str):
    torch.manual_seed(0)
    cfg = {"fusion": fusion} | ({"pretrained": False} if name == "avt-teacher" else {})
    return create_model(name, **cfg).eval()


def _inputs(keep=MODALITIES, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {
        "image": torch.rand(B, 3, 64, 64, generator=g),
        "audio": torch.randn(B, 16000, generator=g) * 0.1,
        "text_ids": torch.randint(1000, 2000, (B, 16), generator=g),
        "text_mask": torch.ones(B, 16, dtype=torch.int64),
    }
    x["text_mask"][:, 6:] = 0
    out = {k: v for k, v in x.items() if k.split("_")[0] in keep}
    out["modality_mask"] = torch.tensor([[m in keep for m in MODALITIES]] * B, dtype=torch.float32)
    return out


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("keep", SUBSETS, ids="+".join)
def test_outputs_for_every_fusion_and_missing_subset(name, fusion, keep):
    model = _model(name, fusion)
    with torch.inference_mode():
        out = model(**_inputs(keep))
        # The same subset given by mask only (all inputs passed) must give the same logits.
        masked = model(**{**_inputs(), "modality_mask": _inputs(keep)["modality_mask"]})
    assert out["logits"].shape == (B, 10) and out["logits"].dtype == torch.float32
    assert out["tokens"].shape[:2] == (B, 3)
    assert out["fused"].shape == (B, out["tokens"].shape[2])
    assert out["contributions"].shape == (B, 3)
    torch.testing.assert_close(out["contributions"].sum(1), torch.ones(B))
    assert torch.isfinite(out["logits"]).all()
    torch.testing.assert_close(out["logits"], masked["logits"], atol=1e-5, rtol=1e-5)


def test_missing_modality_changes_the_answer():
    model = _model("avt-fusion", "attention")
    with torch.inference_mode():
        full = model(**_inputs())["logits"]
        no_image = model(**_inputs(("audio", "text")))["logits"]
    assert (full - no_image).abs().max() > 1e-4


def test_registry_round_trip():
    assert {"avt-teacher", "avt-fusion"} <= set(list_models())
    assert list_models("avt-t*") == ["avt-teacher"]
    m = create_model("avt-fusion", fusion="gated", dim=64)
    cfg = m.edgefuse_config
    assert cfg == {"name": "avt-fusion", "cfg": {"fusion": "gated", "dim": 64}}
    again = create_model(cfg["name"], **cfg["cfg"])
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}


def test_teacher_size_is_in_the_design_range():
    n = sum(p.numel() for p in _model("avt-teacher", "attention").parameters())
    assert 25e6 <= n <= 30e6


def test_checkpoint_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    model = create_model("avt-fusion", fusion="concat").eval()
    with torch.no_grad():  # make BN statistics non-trivial so they must round-trip too
        model.image.net.body[0][1].running_mean.uniform_(-1, 1)
    save_checkpoint(model, tmp_path / "ck", meta={"note": "x"})
    assert not list((tmp_path / "ck").glob("*.pt")) and not list((tmp_path / "ck").glob("*.pkl"))
    loaded = load_checkpoint(tmp_path / "ck")
    with torch.inference_mode():
        a, b = model(**_inputs())["logits"], loaded(**_inputs())["logits"]
    assert torch.equal(a, b)


def test_pretrained_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from edgefuse.models import TextEncoder, Tokenizer
    from edgefuse.models.text import minilm_dir

    texts = ["an odd number", "a digit with a closed loop", "the digit seven"]
    ids, mask = Tokenizer(max_tokens=16).encode(texts)
    with torch.inference_mode():
        ours = TextEncoder.pretrained_minilm().eval()(torch.from_numpy(ids), torch.from_numpy(mask))
    ref = torch.from_numpy(SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts))
    # Same weights; ours uses tanh-GELU (exportable) where MiniLM used erf-GELU: directions agree closely.
    cos = torch.nn.functional.cosine_similarity(ours, ref)
    assert cos.min() > 0.999, cos


@pytest.mark.parametrize(
    ("inputs", "name"),
    [
        ({"image": torch.rand(2, 64, 64, 3)}, "image"),  # NHWC instead of NCHW
        ({"image": torch.rand(2, 3, 64)}, "image"),
        ({"audio": torch.randint(0, 5, (2, 16000))}, "audio"),  # integer audio
        ({"smell": torch.rand(2, 4)}, "smell"),  # unknown modality
        ({"text_ids": torch.zeros(2, 16, dtype=torch.int64)}, "text_mask"),
        ({"text_ids": torch.rand(2, 16), "text_mask": torch.ones(2, 16)}, "text_ids"),
        ({"image": torch.rand(2, 3, 64, 64), "audio": torch.rand(3, 16000)}, "audio"),  # batch mismatch
        ({"image": torch.rand(2, 3, 64, 64), "modality_mask": torch.ones(2, 4)}, "modality_mask"),
        ({"image": np.zeros((2, 3, 64, 64), np.float32)}, "image"),
        ({}, "inputs"),
    ],
)
def test_bad_model_input_names_the_input(inputs, name):
    with pytest.raises(InputError) as e:
        _model("avt-fusion", "gated")(**inputs)
    assert e.value.name == name


def test_unknown_model_or_fusion_is_named():
    with pytest.raises(InputError, match="name"):
        create_model("resnet-9000")
    with pytest.raises(InputError) as e:
        create_model("avt-fusion", fusion="sum")
    assert e.value.name == "fusion"
    with pytest.raises(InputError) as e:
        create_model("avt-fusion", colour="red")
    assert e.value.name == "cfg"
