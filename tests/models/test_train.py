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
    data = AVTConfig(sizes={"train": 800, "val": 200, "test": 200})
    splits = load_splits(data, cache=False)
    torch.manual_seed(0)
    model = create_model("avt-fusion", fusion="gated", text_depth=1)
    logs = fit(model, splits, TrainConfig(epochs=3, batch_size=32, lr=3e-3, text_lr=3e-3, text_trainable_layers=1))
    assert logs[-1]["loss"] < logs[0]["loss"]
    acc = evaluate(model, splits["test"])
    assert set(acc) == {*CONDITIONS, "natural"}
    assert all(0 <= v <= 1 for v in acc.values())
    assert acc["all"] > 0.3  # chance is 0.1
    assert np.isfinite(logs[-1]["loss"])


def test_bad_train_config_names_the_field():
    with pytest.raises(InputError) as e:
        TrainConfig(modality_dropout=1.0)
    assert e.value.name == "modality_dropout"
