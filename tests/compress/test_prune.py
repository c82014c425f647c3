import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgefuse.compress.export import export_split
from edgefuse.compress.prune import PruneConfig, PrunePlan, load_pruned, prune, save_pruned
from edgefuse.models import create_model


def _example(batch=2, vocab=30522):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, 16, dtype=torch.int64)
    mask[:, :5] = 1
    return {
        "image": torch.rand(batch, 3, 64, 64, generator=g),
        "audio": torch.randn(batch, 16000, generator=g) * 0.1,
        "text_ids": torch.randint(1000, 1100, (batch, 16), generator=g) * mask,
        "text_mask": mask,
        "modality_mask": torch.ones(batch, 3),
    }


def _model():
    torch.manual_seed(0)
    return create_model("avt-fusion", fusion="attention", text_dim=64, text_depth=2, text_heads=4).eval()


def test_head_pruning_drops_whole_heads_and_the_model_exports():
    model = _model()
    d_head = model.text.blocks[0].attn.q.out_features // 4
    cfg = PruneConfig(plans={"text": PrunePlan(head_ratio=0.5), "fusion": PrunePlan(head_ratio=0.5)}, ignore=["head"])
    model, report = prune(model, _example(), cfg)
    for att in [b.attn for b in model.text.blocks] + [b.attn for b in model.fusion.blocks]:
        assert att.num_heads == 2
    assert model.text.blocks[0].attn.q.out_features == 2 * d_head  # whole heads, head size kept
    assert report.after["total"]["params"] < report.before["total"]["params"]
    out = model(**_example())
    assert out["logits"].shape == (2, 10) and torch.isfinite(out["logits"]).all()
    for g in export_split(model, _example()):
        onnx.checker.check_model(onnx.load_from_string(g.data))


@pytest.mark.parametrize("round_to", [8, 16])
def test_channel_counts_are_rounded(round_to):
    model = _model()
    cfg = PruneConfig(plans={"image": PrunePlan(0.4), "audio": PrunePlan(0.3)}, round_to=round_to, ignore=["head"])
    model, report = prune(model, _example(), cfg)
    convs = [m for k in ("image", "audio") for m in getattr(model, k).modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % round_to == 0 for c in convs)
    assert report.after["image"]["params"] < report.before["image"]["params"]
    assert report.after["image"]["macs"] < report.before["image"]["macs"] and report.after["audio"]["macs"] > 0


def test_vocab_pruning_keeps_logits_of_in_vocab_text():
    model = _model()
    ex = _example()
    with torch.inference_mode():
        before = model(**ex)["logits"]
    keep = sorted(set(ex["text_ids"].unique().tolist()))
    model, report = prune(model, ex, PruneConfig(vocab_embedding="text.tok", vocab_keep=keep))
    assert model.text.tok.num_embeddings == len(keep)
    remapped = dict(ex, text_ids=torch.from_numpy(report.vocab_remap).long()[ex["text_ids"]])
    with torch.inference_mode():
        after = model(**remapped)["logits"]
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    assert report.vocab_remap[keep[1]] == 1 and (report.vocab_remap >= 0).sum() == len(keep)


def test_depth_pruning_keeps_the_last_block():
    model = _model()
    last = model.text.blocks[-1]
    model, _ = prune(model, _example(), PruneConfig(plans={"text": PrunePlan(keep_layers=1)}))
    assert len(model.text.blocks) == 1 and model.text.blocks[0] is last


def test_pruned_model_saves_and_loads_identically(tmp_path):
    model = _model()
    cfg = PruneConfig(
        plans={
            "image": PrunePlan(0.5),
            "text": PrunePlan(0.5, head_ratio=0.5, keep_layers=1),
            "fusion": PrunePlan(0.5),
        },
        ignore=["head"],
        vocab_embedding="text.tok",
        vocab_keep=list(range(900, 1200)),
    )
    ex = _example()
    model, report = prune(model, ex, cfg)
    ex = dict(ex, text_ids=torch.from_numpy(report.vocab_remap).long()[ex["text_ids"]].clamp(min=0))
    save_pruned(model, tmp_path / "p")
    assert not list((tmp_path / "p").glob("*.pt"))
    loaded = load_pruned(tmp_path / "p")
    with torch.inference_mode():
        assert torch.equal(model(**ex)["logits"], loaded(**ex)["logits"])


def test_prunes_a_third_party_transformer():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    ).eval()
    ex = {"input_ids": torch.randint(0, 500, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.int64)}
    cfg = PruneConfig(plans={"encoder": PrunePlan(0.5)}, round_to=8)
    bert, report = prune(bert, ex, cfg)
    assert report.after["total"]["params"] < report.before["total"]["params"]
    ffn = bert.encoder.layer[0].intermediate.dense.out_features
    assert ffn < 128 and ffn % 8 == 0
    out = bert(**ex).last_hidden_state
    assert out.shape[:2] == (2, 12) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("cfg", "name"),
    [
        (PruneConfig(plans={"image": PrunePlan(ratio=1.0)}), "plans['image'].ratio"),
        (PruneConfig(plans={"image": PrunePlan(ratio=-0.1)}), "plans['image'].ratio"),
        (PruneConfig(plans={"vision": PrunePlan(0.5)}), "plans['vision']"),
        (PruneConfig(plans={"text": PrunePlan(keep_layers=0)}), "plans['text'].keep_layers"),
        (PruneConfig(plans={"image": PrunePlan(keep_layers=1)}), "plans['image'].keep_layers"),
        (PruneConfig(plans={"image": PrunePlan(ratio=0.999)}), "plans['image'].ratio"),
        (PruneConfig(ignore=["nope"]), "ignore"),
        (PruneConfig(importance="vibes"), "importance"),
        (PruneConfig(round_to=0), "round_to"),
        (PruneConfig(vocab_embedding="text.tok"), "vocab_keep"),
        (PruneConfig(vocab_embedding="head", vocab_keep=[1]), "vocab_embedding"),
    ],
)
def test_bad_config_fails_before_any_work_naming_the_field(cfg, name):
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as e:
        prune(model, _example(), cfg)
    assert e.value.name == name
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # untouched


def test_config_round_trips_through_a_dict():
    cfg = PruneConfig(plans={"image": PrunePlan(0.5, keep_layers=None)}, round_to=16)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="ratios"):
        PruneConfig.from_dict({"ratios": 1})
    np.testing.assert_equal(cfg.to_dict()["plans"]["image"]["ratio"], 0.5)


def test_step_configs_compound_to_the_plan():
    from edgefuse.compress.prune import step_config

    cfg = PruneConfig(
        plans={"image": PrunePlan(0.75, head_ratio=0.0, keep_layers=None)}, vocab_embedding="text.tok", vocab_keep=[1]
    )
    steps = [step_config(cfg, 2, i) for i in range(2)]
    assert [s.plans["image"].ratio for s in steps] == pytest.approx([0.5, 0.5])
    assert steps[0].vocab_keep == [1] and steps[1].vocab_keep is None


def test_taylor_importance_needs_and_uses_gradients():
    model = _model()
    cfg = PruneConfig(plans={"image": PrunePlan(0.5)}, importance="taylor", ignore=["head"])
    with pytest.raises(ValueError) as e:
        prune(model, _example(), cfg)
    assert e.value.name == "importance"
    ex = _example()
    labels = torch.tensor([3, 7])
    model, report = prune(model, ex, cfg, calibration=lambda m: nn.functional.cross_entropy(m(**ex)["logits"], labels))
    assert report.after["image"]["params"] < report.before["image"]["params"]
    assert report.after["image"]["macs"] < report.before["image"]["macs"] and report.after["audio"]["macs"] > 0
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_prune_consistently_and_stay_frozen():
    model = _model()
    model.requires_grad_(False)  # e.g. a teacher after distillation
    model.image.requires_grad_(True)
    cfg = PruneConfig(
        plans={"text": PrunePlan(0.5, head_ratio=0.5), "image": PrunePlan(0.5)},
        ignore=["head"],
        vocab_embedding="text.tok",  # a fresh (trainable) embedding next to frozen positions
        vocab_keep=list(range(900, 1200)),
    )
    model, report = prune(model, _example(), cfg)
    ids = torch.from_numpy(report.vocab_remap).long()[_example()["text_ids"]].clamp(min=0)
    assert model(**dict(_example(), text_ids=ids))["logits"].shape == (2, 10)
    assert not any(p.requires_grad for p in model.text.parameters())
    assert all(p.requires_grad for p in model.image.parameters())
