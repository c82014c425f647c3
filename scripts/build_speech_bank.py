"""Rebuild the committed AVT-Digits speech bank (maintainer script, not part of the library).

Runs the `espeak-ng` program (Debian package `espeak-ng`) as a separate process for every
(accent, voice variant, rate, pitch) "speaker" and every spoken digit, resamples to 16 kHz,
trims silence and stores 8-bit mu-law in `models/data/speech_bank.npz`. The library only reads
that file; it never imports or links espeak-ng (GPL).

    apt-get install espeak-ng && python scripts/build_speech_bank.py
"""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = [
    "en-gb",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]
VARIANTS = ["m1", "m3", "m7", "f1", "f2", "f4", "klatt2", "croak"]
RATE = 16_000
MAX_SECONDS = 0.9
OUT = Path(__file__).resolve().parents[1] / "models" / "data" / "speech_bank.npz"


def mu_law_encode(x: np.ndarray) -> np.ndarray:
    y = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)


def speak(word: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", word],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    x = resample_poly(x, RATE // 50, sr // 50).astype(np.float32)  # 22050 -> 16000 Hz
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1][: int(MAX_SECONDS * RATE)]
    return x / (np.abs(x).max() + 1e-9) * 0.9


def main() -> None:
    rng = np.random.default_rng(1234)
    clips, names, digits, speakers = [], [], [], []
    for a in ACCENTS:
        for v in VARIANTS:
            voice = f"{a}+{v}"
            rate, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 80))
            names.append(f"{voice} s{rate} p{pitch}")
            for d, word in enumerate(WORDS):
                clips.append(mu_law_encode(speak(word, voice, rate, pitch)))
                digits.append(d)
                speakers.append(len(names) - 1)
    lengths = np.array([len(c) for c in clips], dtype=np.int32)
    np.savez_compressed(
        OUT,
        audio=np.concatenate(clips),
        offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        lengths=lengths,
        digit=np.array(digits, dtype=np.int8),
        speaker=np.array(speakers, dtype=np.int16),
        speaker_names=np.array(names),
        sample_rate=np.int32(RATE),
    )
    print(f"{len(clips)} clips from {len(names)} speakers -> {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
