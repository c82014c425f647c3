import wave

import numpy as np
import pytest

from edgefuse.models import MODALITIES, AVTConfig, InputError, Tokenizer, describe, load_splits, write_samples
from edgefuse.models.avt_digits import _FIELDS

SMALL = {"train": 60, "val": 20, "test": 20}


def test_same_seed_same_bytes():
    a = load_splits(AVTConfig(seed=3, sizes=SMALL), cache=False)
    b = load_splits(AVTConfig(seed=3, sizes=SMALL), cache=False)
    for split in SMALL:
        for f in _FIELDS:
            assert getattr(a[split], f).tobytes() == getattr(b[split], f).tobytes(), (split, f)
    c = load_splits(AVTConfig(seed=4, sizes=SMALL), cache=False)
    assert a["train"].image.tobytes() != c["train"].image.tobytes()


def test_cache_round_trip_is_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFUSE_CACHE", str(tmp_path))
    cfg = AVTConfig(seed=1, sizes={"test": 12})
    fresh = load_splits(cfg)
    assert len(list(tmp_path.glob("avt-digits-*.npz"))) == 1
    cached = load_splits(cfg)
    for f in _FIELDS:
        np.testing.assert_array_equal(getattr(fresh["test"], f), getattr(cached["test"], f))


def test_splits_are_disjoint_in_handwriting_and_voices():
    s = load_splits(AVTConfig(sizes={"train": 600, "val": 200, "test": 200}), cache=False)
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not set(s[a].digit_index) & set(s[b].digit_index), (a, b)
        assert not set(s[a].speaker) & set(s[b].speaker), (a, b)
    assert len(set(s["test"].speaker)) >= 8  # the test split hears many unseen voices


def test_shapes_dtypes_and_masks():
    sp = load_splits(AVTConfig(sizes={"val": 50}), cache=False)["val"]
    assert sp.image.shape == (50, 64, 64, 3) and sp.image.dtype == np.uint8
    assert sp.audio.shape == (50, 16000) and sp.audio.dtype == np.int16
    assert sp.text_ids.shape == (50, 16) and sp.text_ids.dtype == np.int64
    assert sp.present.any(axis=1).all()  # never all three missing
    assert (np.bincount(sp.label, minlength=10) == 5).all()  # balanced
    x = sp.inputs(np.arange(10), keep=("audio",))
    assert x["image"].shape == (10, 3, 64, 64) and x["image"].dtype == np.float32
    assert not x["image"].any() and not x["text_ids"].any() and x["audio"].any()
    np.testing.assert_array_equal(x["modality_mask"], np.tile([0, 1, 0], (10, 1)))
    nat = sp.inputs()
    np.testing.assert_array_equal(nat["modality_mask"], sp.present.astype(np.float32))
    assert np.abs(nat["audio"]).max() <= 1.0


def test_describe_and_samples(tmp_path):
    s = load_splits(AVTConfig(sizes={"train": 20, "test": 10}), cache=False)
    table = describe(s)
    assert "train" in table and "test" in table and "image missing" in table
    files = write_samples(s["test"], tmp_path, count=3)
    assert len(files) == 9 and all(f.stat().st_size > 0 for f in files)
    with wave.open(str(next(f for f in files if f.suffix == ".wav"))) as w:
        assert w.getframerate() == 16000 and w.getnframes() == 16000


def test_hints_tokenise_with_minilm_wordpiece():
    ids, mask = Tokenizer(max_tokens=16).encode(["an odd number", "the digit seven"])
    assert ids.shape == (2, 16) and ids[0, 0] == 101  # [CLS]
    assert mask[0].sum() == 5  # [CLS] an odd number [SEP]


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: AVTConfig(sizes={"holdout": 5}), "sizes"),
        (lambda: AVTConfig(sizes={"train": 0}), "sizes['train']"),
        (lambda: AVTConfig(missing=1.5), "missing"),
        (lambda: load_splits(AVTConfig(sizes={"test": 2}), cache=False)["test"].inputs(keep=("smell",)), "keep"),
        (lambda: load_splits(AVTConfig(sizes={"test": 2}), cache=False)["test"].inputs(keep=()), "keep"),
        (lambda: Tokenizer().encode(["fine", "   "]), "text[1]"),
        (lambda: Tokenizer().encode([b"bytes"]), "text[0]"),
    ],
)
def test_bad_input_names_the_input(make, name):
    with pytest.raises(InputError) as e:
        make()
    assert e.value.name == name
    assert name in str(e.value)


def test_modalities_order_is_the_mask_order():
    assert MODALITIES == ("image", "audio", "text")
