import numpy as np
import pytest
import torch

from edgefuse.models import AVTConfig, InputError, create_model, load_splits
from edgefuse.models.train import CONDITIONS, TrainConfig, drop_modalities, evaluate, fit


def test_modality_dropout_never_empties_a_sample():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(5000, 3)
    mask[::2, 0] = 0
    kept = drop_modalities(mask, 0.9, g)
    assert (kept.sum(1) >= 1).all()
    assert (kept <= mask).all()  # never revives a missing modality
    assert 0.05 < kept[1::2].mean() < 0.5  # it does drop


@pytest.mark.slow
def test_a_small_model_learns_avt_digits():
    data = AVTConfig(sizes={"train": 1200, "val": 200, "test": 200})
    splits = load_splits(data, cache=False)
    torch.manual_seed(0)
    model = create_model("avt-fusion", fusion="gated", text_depth=1)
    cfg = TrainConfig(epochs=5, unimodal_epochs=1, batch_size=32, lr=2e-3, text_lr=2e-3, text_trainable_layers=1)
    logs = fit(model, splits, cfg)
    assert logs[-1]["loss"] < logs[1]["loss"]  # joint phase (epochs 2..5) lowers the loss
    assert logs[-1]["train_probe_accuracy"]["audio"] > 0.3  # the towers learn on their own too
    acc = evaluate(model, splits["test"])
    assert set(acc) == {*CONDITIONS, "natural"}
    assert all(0 <= v <= 1 for v in acc.values())
    assert acc["all"] > 0.3  # chance is 0.1
    assert np.isfinite(logs[-1]["loss"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"modality_dropout": 1.0}, "modality_dropout"), ({"epochs": 2, "unimodal_epochs": 2}, "unimodal_epochs")],
)
def test_bad_train_config_names_the_field(kwargs, name):
    with pytest.raises(InputError) as e:
        TrainConfig(**kwargs)
    assert e.value.name == name
