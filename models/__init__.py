"""Reference models and the embedded AVT-Digits task (needs the `[compress]` extra: torch)."""

from .avt_digits import LABELS, MODALITIES, SAMPLE_RATE, AVTConfig, Split, describe, load_splits, write_samples
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import InputError
from .multimodal import INPUTS, MultimodalClassifier
from .registry import create_model, list_models, register
from .text import TextEncoder, Tokenizer

__all__ = [
    "INPUTS",
    "LABELS",
    "MODALITIES",
    "SAMPLE_RATE",
    "AVTConfig",
    "InputError",
    "MultimodalClassifier",
    "Split",
    "TextEncoder",
    "Tokenizer",
    "create_model",
    "describe",
    "list_models",
    "load_checkpoint",
    "load_splits",
    "register",
    "save_checkpoint",
    "write_samples",
]
