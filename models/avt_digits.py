"""AVT-Digits: the embedded default task — a digit seen, heard and hinted at.

Every sample is one digit class (0-9) shown three ways, none of which suffices alone:
- image: a real scikit-learn handwritten digit (8x8), warped and composited on a crop of a real photo,
  with noise and occlusion -> RGB 64x64;
- audio: the spoken digit from the committed espeak-ng speech bank, at a random onset, buried in noise at a
  random SNR and a quieter "babble" digit from another voice -> 1 s at 16 kHz;
- text: a hint that only narrows the class ("an odd number"), rarely exact.

Splits draw from disjoint pools: digit images, photo regions and speakers never cross splits, so the test
split measures generalisation to unseen handwriting, backgrounds and voices. Everything is a pure
function of the config (seed included); generated splits are cached on disk so a reload takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from .errors import InputError
from .text import Tokenizer

__all__ = [
    "LABELS",
    "MODALITIES",
    "SAMPLE_RATE",
    "SPLITS",
    "AVTConfig",
    "Split",
    "describe",
    "load_splits",
    "write_samples",
]

MODALITIES = ("image", "audio", "text")
SPLITS = ("train", "val", "test")
LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_BANK = Path(__file__).parent / "data" / "speech_bank.npz"
SAMPLE_RATE = 16_000  # the speech bank's rate
_VERSION = 1  # bump when generation changes, so stale caches are not reused

# Each hint names a property; the digits that have it. A hint narrows the class to that set.
_HINTS: dict[str, tuple[frozenset[int], tuple[str, ...]]] = {
    "even": (frozenset({0, 2, 4, 6, 8}), ("an even number", "it is even", "the number is even")),
    "odd": (frozenset({1, 3, 5, 7, 9}), ("an odd number", "it is odd", "the number is odd")),
    "prime": (frozenset({2, 3, 5, 7}), ("a prime number", "it is prime")),
    "composite": (frozenset({0, 1, 4, 6, 8, 9}), ("not a prime number", "it is not prime")),
    "small": (frozenset({0, 1, 2, 3, 4}), ("smaller than five", "a small digit, below five")),
    "large": (frozenset({5, 6, 7, 8, 9}), ("five or more", "a large digit, at least five")),
    "curvy": (frozenset({0, 2, 3, 5, 6, 8, 9}), ("a digit with curves", "it has round strokes")),
    "straight": (frozenset({1, 4, 7}), ("a digit made of straight lines", "only straight strokes")),
    "loop": (frozenset({0, 6, 8, 9}), ("a digit with a closed loop", "it has a loop")),
}
_EXACT = ("the digit {w}", "it is {w}", "number {d}")


@dataclass(frozen=True)
class AVTConfig:
    """How AVT-Digits is generated. Every field takes part in the cache key."""

    seed: int = 0
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 4000, "val": 500, "test": 1000})
    image_size: int = 64
    max_tokens: int = 16
    missing: float = 0.1  # chance that a sample lacks each modality (never all three)
    exact_hint: float = 0.1  # chance that the text names the digit outright
    snr_db: tuple[float, float] = (-8.0, 4.0)  # speech-to-noise ratio range
    digit_opacity: tuple[float, float] = (0.7, 1.0)
    position_jitter: float = 0.06  # digit centre moves by up to this fraction of the image size
    background_contrast: float = 0.35  # photo detail kept (1 = the raw photo); clutter competes with the digit
    occlusion: float = 0.3  # chance of a random opaque patch over the image

    def __post_init__(self) -> None:
        unknown = set(self.sizes) - set(SPLITS)
        if unknown:
            raise InputError("sizes", f"unknown split(s) {sorted(unknown)}", f"use only {SPLITS}")
        for name, n in self.sizes.items():
            if n < 1:
                raise InputError(f"sizes[{name!r}]", f"must be at least 1, got {n}", "ask for 1 or more")
        if not 0 <= self.missing < 1:
            raise InputError("missing", f"must be in [0, 1), got {self.missing}", "e.g. 0.1")
        if self.image_size < 16:
            raise InputError("image_size", f"must be at least 16, got {self.image_size}", "e.g. 64")

    def key(self) -> str:
        blob = json.dumps([_VERSION, asdict(self), _file_sha(_BANK)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Split:
    """One split as arrays. Content is stored for every modality; `present` says which ones a sample has."""

    name: str
    image: np.ndarray  # (N, H, W, 3) uint8
    audio: np.ndarray  # (N, S) int16
    text: np.ndarray  # (N,) str, "" where absent
    text_ids: np.ndarray  # (N, T) int64
    text_mask: np.ndarray  # (N, T) int64
    present: np.ndarray  # (N, 3) bool, order = MODALITIES
    label: np.ndarray  # (N,) int64
    speaker: np.ndarray  # (N,) int16, index into the speech bank's speakers
    digit_index: np.ndarray  # (N,) int32, index into sklearn's load_digits

    def __len__(self) -> int:
        return len(self.label)

    def inputs(self, index: np.ndarray | slice | None = None, keep: tuple[str, ...] | None = None) -> dict:
        """Model inputs for `index` as float32/int64 arrays; absent modalities are zeroed.

        `keep` overrides each sample's own presence: `keep=("image",)` evaluates image-only,
        `keep=MODALITIES` forces every modality present.
        """
        index = slice(None) if index is None else index
        present = self.present[index] if keep is None else np.broadcast_to(_mask_for(keep), (len(self.label[index]), 3))
        p = present.astype(np.float32)
        return {
            "image": self.image[index].transpose(0, 3, 1, 2).astype(np.float32) / 255 * p[:, 0, None, None, None],
            "audio": self.audio[index].astype(np.float32) / 32768 * p[:, 1, None],
            "text_ids": self.text_ids[index] * present[:, 2, None],
            "text_mask": self.text_mask[index] * present[:, 2, None],
            "modality_mask": p,
        }


def _mask_for(keep: tuple[str, ...]) -> np.ndarray:
    unknown = [m for m in keep if m not in MODALITIES]
    if unknown:
        raise InputError("keep", f"unknown modality {unknown[0]!r}", f"choose from {MODALITIES}")
    if not keep:
        raise InputError("keep", "no modality left", "keep at least one of " + ", ".join(MODALITIES))
    return np.array([m in keep for m in MODALITIES])


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_dir() -> Path:
    return Path(os.environ.get("EDGEFUSE_CACHE", Path.home() / ".cache" / "edgefuse"))


def load_splits(config: AVTConfig | None = None, cache: bool = True) -> dict[str, Split]:
    """Generate (or reload from the cache) every split named in `config.sizes`."""
    config = config or AVTConfig()
    path = _cache_dir() / f"avt-digits-{config.key()}.npz"
    if cache and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {s: Split(s, *(z[f"{s}/{f}"] for f in _FIELDS)) for s in config.sizes}
    splits = {s: _generate(config, s) for s in config.sizes}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"{s}/{f}": getattr(sp, f) for s, sp in splits.items() for f in _FIELDS})
        tmp.replace(path)  # atomic: a crash never leaves a half-written cache
    return splits


_FIELDS = ("image", "audio", "text", "text_ids", "text_mask", "present", "label", "speaker", "digit_index")


@cache
def _sources() -> tuple:
    from sklearn.datasets import load_digits, load_sample_images

    digits = load_digits()
    photos = np.stack(load_sample_images().images)  # (2, 427, 640, 3) uint8
    with np.load(_BANK, allow_pickle=False) as z:
        bank = {k: z[k] for k in z.files}
    return digits.images.astype(np.float32) / 16, digits.target, photos, bank


def _pools(config: AVTConfig) -> dict:
    """Disjoint per-split pools of digit images, speakers and photo columns (fixed by the seed)."""
    _images, targets, photos, bank = _sources()
    rng = np.random.default_rng([config.seed, 7])
    fractions = {"train": (0.0, 0.6), "val": (0.6, 0.72), "test": (0.72, 1.0)}
    order_img = rng.permutation(len(targets))
    order_spk = rng.permutation(len(bank["speaker_names"]))
    width = photos.shape[2]
    pools = {}
    for s, (a, b) in fractions.items():
        imgs = order_img[int(a * len(order_img)) : int(b * len(order_img))]
        spks = order_spk[int(a * len(order_spk)) : int(b * len(order_spk))]
        pools[s] = {
            "images": {d: imgs[targets[imgs] == d] for d in range(10)},
            "clips": {d: np.flatnonzero(np.isin(bank["speaker"], spks) & (bank["digit"] == d)) for d in range(10)},
            "columns": (int(a * width), int(b * width)),
        }
    return pools


def _generate(config: AVTConfig, split: str) -> Split:
    images, _, photos, bank = _sources()
    pool = _pools(config)[split]
    n = config.sizes[split]
    tokenizer = Tokenizer(max_tokens=config.max_tokens)
    seed = [config.seed, SPLITS.index(split)]
    labels = np.random.default_rng(seed).permutation(np.arange(n) % 10)
    out = {f: [] for f in ("image", "audio", "text", "present", "speaker", "digit_index")}
    for i, y in enumerate(labels):
        rng = np.random.default_rng([*seed, i])  # one stream per sample: stable whatever the size
        di = rng.choice(pool["images"][y])
        clip = rng.choice(pool["clips"][y])
        out["digit_index"].append(di)
        out["speaker"].append(bank["speaker"][clip])
        out["image"].append(_render_image(images[di], photos, pool["columns"], config, rng))
        out["audio"].append(_render_audio(bank, clip, pool["clips"], y, config, rng))
        out["text"].append(_hint(y, config, rng))
        present = rng.random(3) >= config.missing
        if not present.any():
            present[rng.integers(3)] = True
        out["present"].append(present)
    text = np.array([t if p[2] else "" for t, p in zip(out["text"], out["present"], strict=True)])
    ids, mask = tokenizer.encode(list(out["text"]))
    return Split(
        name=split,
        image=np.stack(out["image"]),
        audio=np.stack(out["audio"]),
        text=text,
        text_ids=ids,
        text_mask=mask,
        present=np.stack(out["present"]),
        label=labels.astype(np.int64),
        speaker=np.array(out["speaker"], dtype=np.int16),
        digit_index=np.array(out["digit_index"], dtype=np.int32),
    )


def _render_image(
    digit: np.ndarray, photos: np.ndarray, columns: tuple[int, int], config: AVTConfig, rng
) -> np.ndarray:
    from scipy.ndimage import affine_transform

    size = config.image_size
    # Background: a random crop of a real photo, from this split's own band of columns.
    photo = photos[rng.integers(len(photos))]
    c0, c1 = columns
    y0 = rng.integers(0, photo.shape[0] - size)
    x0 = rng.integers(c0, max(c0 + 1, c1 - size))
    bg = photo[y0 : y0 + size, x0 : x0 + size].astype(np.float32) / 255
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    mean = bg.mean(axis=(0, 1))
    bg = 0.5 * mean + config.background_contrast * (bg - mean)  # dimmed, so bright ink stands out
    # Digit: output pixel -> source pixel through a random scale, rotation, shear and shift.
    scale = rng.uniform(4.0, 5.5)  # 8 px -> 32..44 px
    theta, shear = rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = rot @ np.array([[1, shear], [0, 1]]) / scale
    centre = size / 2 + rng.uniform(-1, 1, 2) * config.position_jitter * size
    offset = np.array([3.5, 3.5]) - matrix @ centre
    alpha = affine_transform(digit, matrix, offset, output_shape=(size, size), order=1, cval=0.0)
    alpha = np.clip(alpha, 0, 1)[..., None] * rng.uniform(*config.digit_opacity)
    colour = rng.uniform(0.5, 1, 3).astype(np.float32)  # bright ink of any hue
    img = bg * (1 - alpha) + colour * alpha
    if rng.random() < config.occlusion:
        h, w = rng.integers(size // 5, size // 2, 2)
        oy, ox = rng.integers(0, size - h), rng.integers(0, size - w)
        img[oy : oy + h, ox : ox + w] = rng.uniform(0, 1, 3)
    img = img + rng.normal(0, rng.uniform(0.02, 0.08), img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _mu_law_decode(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float32) / 127.5 - 1
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(255)) / 255


def _clip(bank: dict, i: int) -> np.ndarray:
    o, n = bank["offsets"][i], bank["lengths"][i]
    return _mu_law_decode(bank["audio"][o : o + n])


def _render_audio(bank: dict, clip: int, clips: dict, label: int, config: AVTConfig, rng) -> np.ndarray:
    n = SAMPLE_RATE
    speech = _clip(bank, clip)[:n] * rng.uniform(0.3, 1.0)
    out = np.zeros(n, np.float32)
    onset = rng.integers(0, n - len(speech) + 1)
    out[onset : onset + len(speech)] = speech
    # Noise: coloured (white..brown) plus a quieter babble digit from a different class, at a random SNR.
    white = rng.normal(0, 1, n).astype(np.float32)
    tilt = rng.uniform(0, 1)
    noise = (1 - tilt) * white + tilt * np.cumsum(white) / np.sqrt(np.arange(1, n + 1))
    other = rng.choice(clips[(label + rng.integers(1, 10)) % 10])
    babble = _clip(bank, other)[:n]
    b0 = rng.integers(0, n - len(babble) + 1)
    noise[b0 : b0 + len(babble)] += babble / (np.std(babble) + 1e-6) * np.std(noise) * rng.uniform(0.3, 1.0)
    snr = rng.uniform(*config.snr_db)
    p_speech = np.mean(speech**2) + 1e-9
    noise *= np.sqrt(p_speech / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
    out += noise
    out /= max(1.0, np.abs(out).max() / 0.99)
    return (out * 32767).round().astype(np.int16)


def _hint(label: int, config: AVTConfig, rng) -> str:
    if rng.random() < config.exact_hint:
        return str(rng.choice(_EXACT)).format(w=LABELS[label], d=label)
    fits = [phrases for digits, phrases in _HINTS.values() if label in digits]
    phrases = fits[rng.integers(len(fits))]
    return str(phrases[rng.integers(len(phrases))])


def describe(splits: dict[str, Split]) -> str:
    """A plain-text table: sizes, class balance and modality-missing rates per split."""
    lines = [
        f"{'split':6} {'n':>6} {'classes (min..max per class)':>30} "
        + " ".join(f"{m + ' missing':>15}" for m in MODALITIES)
    ]
    for name, sp in splits.items():
        counts = np.bincount(sp.label, minlength=10)
        miss = 1 - sp.present.mean(axis=0)
        speakers = len(np.unique(sp.speaker))
        lines.append(
            f"{name:6} {len(sp):>6} {f'{counts.min()}..{counts.max()}':>30} "
            + " ".join(f"{m:>15.1%}" for m in miss)
            + f"   ({speakers} voices, {len(np.unique(sp.digit_index))} handwritten digits)"
        )
    return "\n".join(lines)


def write_samples(split: Split, out: str | Path, count: int = 8) -> list[Path]:
    """Write `count` samples as PNG/WAV/TXT so a person can look at and listen to them."""
    import wave

    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(count, len(split))):
        stem = out / f"{split.name}-{i:03d}-{LABELS[split.label[i]]}"
        Image.fromarray(split.image[i]).resize((256, 256), Image.NEAREST).save(stem.with_suffix(".png"))
        with wave.open(str(stem.with_suffix(".wav")), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(split.audio[i].tobytes())
        present = [m for m, p in zip(MODALITIES, split.present[i], strict=True) if p]
        stem.with_suffix(".txt").write_text(
            f"label: {split.label[i]}\nhint: {split.text[i] or '(none)'}\npresent: {', '.join(present)}\n"
        )
        written += [stem.with_suffix(s) for s in (".png", ".wav", ".txt")]
    return written
