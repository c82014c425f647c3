"""Structured pruning of any `nn.Module` whose forward takes named tensors, over torch-pruning's DepGraph.

    model, report = prune(model, example_inputs, PruneConfig(plans={"image": PrunePlan(ratio=0.5), ...}))

Per-module plans (width ratio, attention-head ratio, depth), channel counts rounded to a multiple so kernels stay
fast, layers left alone, and vocabulary pruning of a token embedding (the returned remap maps original token ids
to the kept rows; the runtime applies it). Pruned models save as safetensors + a JSON of module shapes, and load
without unpickling anything (`save_pruned` / `load_pruned`).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["PruneConfig", "PrunePlan", "PruneReport", "count", "load_pruned", "prune", "save_pruned", "step_config"]


class PruneConfigError(ValueError):
    """A prune config field is wrong; `.name` is the field."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        self.name = name
        super().__init__(f"{name}: {problem}; {fix}")


@dataclass
class PrunePlan:
    ratio: float = 0.0  # fraction of channels / hidden width removed in this module
    head_ratio: float = 0.0  # fraction of attention heads removed (modules with q/k/v Linears and `num_heads`)
    keep_layers: int | None = None  # depth pruning: keep this many blocks of the module's `blocks` list


@dataclass
class PruneConfig:
    plans: dict[str, PrunePlan] = field(default_factory=dict)  # module name -> plan
    importance: str = "magnitude"  # magnitude (L2 of each group) | lamp | taylor (|weight x gradient|)
    global_ranking: bool = False  # rank channels across modules instead of per layer
    round_to: int = 8  # kept channel counts are multiples of this
    ignore: list[str] = field(default_factory=list)  # modules left whole (e.g. the classifier head)
    vocab_embedding: str | None = None  # an nn.Embedding to shrink to `vocab_keep`
    vocab_keep: list[int] | None = None  # token ids to keep (e.g. every id the data uses)

    def check(self, model: nn.Module) -> None:
        """Fail before any work, naming the field."""
        names = dict(model.named_modules())
        if self.importance not in _IMPORTANCE:
            raise PruneConfigError("importance", f"unknown {self.importance!r}", f"choose from {sorted(_IMPORTANCE)}")
        if self.round_to < 1:
            raise PruneConfigError("round_to", f"must be >= 1, got {self.round_to}", "use 8 or 16")
        for key, plan in self.plans.items():
            if key not in names:
                raise PruneConfigError(f"plans[{key!r}]", "no such module", "use a name from model.named_modules()")
            for f in ("ratio", "head_ratio"):
                v = getattr(plan, f)
                if not 0 <= v < 1:
                    raise PruneConfigError(f"plans[{key!r}].{f}", f"must be in [0, 1), got {v}", "e.g. 0.5")
            if plan.keep_layers is not None:
                blocks = getattr(names[key], "blocks", None)
                if not isinstance(blocks, nn.ModuleList):
                    raise PruneConfigError(
                        f"plans[{key!r}].keep_layers", "module has no `blocks` ModuleList", "drop it"
                    )
                if not 1 <= plan.keep_layers <= len(blocks):
                    raise PruneConfigError(
                        f"plans[{key!r}].keep_layers",
                        f"{plan.keep_layers} of {len(blocks)} blocks",
                        "keep 1..n (0 would remove the tower)",
                    )
            for mod in names[key].modules():
                for attr in ("out_channels", "out_features"):
                    n = getattr(mod, attr, None)
                    if n is not None and int(n * (1 - plan.ratio)) < 1:
                        raise PruneConfigError(
                            f"plans[{key!r}].ratio", f"would prune a {n}-wide layer to zero", "lower the ratio"
                        )
        for key in self.ignore:
            if key not in names:
                raise PruneConfigError("ignore", f"no module {key!r}", "use a name from model.named_modules()")
        if (self.vocab_embedding is None) != (self.vocab_keep is None):
            raise PruneConfigError("vocab_keep", "vocab_embedding and vocab_keep come together", "give both or neither")
        if self.vocab_embedding is not None:
            emb = names.get(self.vocab_embedding)
            if not isinstance(emb, nn.Embedding):
                raise PruneConfigError(
                    "vocab_embedding", f"{self.vocab_embedding!r} is not an nn.Embedding", "name the token embedding"
                )
            if not self.vocab_keep or max(self.vocab_keep) >= emb.num_embeddings or min(self.vocab_keep) < 0:
                raise PruneConfigError(
                    "vocab_keep", f"ids must be in [0, {emb.num_embeddings})", "pass the ids the data uses"
                )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PruneConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise PruneConfigError(
                sorted(unknown)[0], "is not a prune setting", f"use {sorted(cls.__dataclass_fields__)}"
            )
        plans = {k: PrunePlan(**v) if isinstance(v, dict) else v for k, v in d.get("plans", {}).items()}
        return cls(**{**d, "plans": plans})


@dataclass
class PruneReport:
    before: dict[str, dict[str, int]]  # module -> {"params", "macs"}
    after: dict[str, dict[str, int]]
    vocab_remap: np.ndarray | None = None  # original id -> kept row (-1 = dropped)


def count(model: nn.Module, example: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """Params and MACs (of layers, for the batch in `example`) for the whole model and each top-level child."""
    import torch_pruning as tp

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # tp prints batch-size notes
        warnings.simplefilter("ignore")
        macs, params, layer_macs, _ = tp.utils.count_ops_and_params(model, example, layer_wise=True)
    out = {"total": {"macs": int(macs), "params": int(params)}}
    for name, child in model.named_children():
        leaves = [m for m in child.modules() if not list(m.children())]
        out[name] = {
            "macs": int(sum(layer_macs.get(m) or 0 for m in leaves)),
            "params": sum(p.numel() for p in child.parameters()),
        }
    return out


_IMPORTANCE = {
    "magnitude": lambda tp: tp.importance.GroupMagnitudeImportance(p=2),
    "lamp": lambda tp: tp.importance.LAMPImportance(p=2),
    "taylor": lambda tp: tp.importance.GroupTaylorImportance(),  # needs gradients: prune(..., calibration=)
}


def step_config(config: PruneConfig, steps: int, step: int) -> PruneConfig:
    """The config for step `step` (0-based) of `steps` iterative steps: each step removes the same fraction of what
    is left, so after all steps the ratios compound to the configured ones; depth and vocabulary go in step 0."""

    def frac(r: float) -> float:
        return 1 - (1 - r) ** (1 / steps)

    first = step == 0
    return PruneConfig(
        plans={
            k: PrunePlan(frac(p.ratio), frac(p.head_ratio), p.keep_layers if first else None)
            for k, p in config.plans.items()
        },
        importance=config.importance,
        global_ranking=config.global_ranking,
        round_to=config.round_to,
        ignore=list(config.ignore),
        vocab_embedding=config.vocab_embedding if first else None,
        vocab_keep=config.vocab_keep if first else None,
    )


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if all(hasattr(m, a) for a in ("q", "k", "v", "num_heads"))]


def _prune_depth(module: nn.Module, keep: int) -> list[int]:
    """Keep `keep` blocks, evenly spaced and always the last (it feeds the output)."""
    n = len(module.blocks)
    kept = sorted({round(i * (n - 1) / max(keep - 1, 1)) for i in range(keep)} if keep > 1 else {n - 1})
    module.blocks = nn.ModuleList(module.blocks[i] for i in kept)
    return kept


def _prune_vocab(model: nn.Module, name: str, keep: list[int]) -> np.ndarray:
    emb = model.get_submodule(name)
    ids = sorted(set(keep))
    remap = np.full(emb.num_embeddings, -1, np.int32)
    remap[ids] = np.arange(len(ids), dtype=np.int32)
    new = nn.Embedding(len(ids), emb.embedding_dim, padding_idx=None)
    new.weight.data = emb.weight.data[ids].clone()
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return remap


def prune(
    model: nn.Module,
    example_inputs: dict[str, torch.Tensor],
    config: PruneConfig,
    calibration: Callable[[nn.Module], torch.Tensor] | None = None,
) -> tuple[nn.Module, PruneReport]:
    """Prune `model` in place per `config`; returns it and a report (params/MACs per top-level child).
    `calibration(model) -> loss` on real data supplies the gradients that `importance="taylor"` ranks by."""
    import torch_pruning as tp

    config.check(model)
    if config.importance == "taylor" and calibration is None:
        raise PruneConfigError(
            "importance", "taylor ranks by gradients", "pass calibration=lambda m: loss on a real batch"
        )
    model.eval()
    # torch-pruning skips frozen parameters, which leaves shared widths inconsistent: unfreeze, re-freeze after.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    model.requires_grad_(True)
    before = count(model, example_inputs)
    depth = {}
    for key, plan in config.plans.items():
        if plan.keep_layers is not None:
            depth[key] = _prune_depth(model.get_submodule(key), plan.keep_layers)
    remap = None
    if config.vocab_embedding:
        remap = _prune_vocab(model, config.vocab_embedding, config.vocab_keep)
        example_inputs = _remap_example(example_inputs, remap)
    ratios = {model.get_submodule(k): p.ratio for k, p in config.plans.items() if p.ratio > 0}
    head_ratios = {}
    heads = {}
    for att in _attention_modules(model):
        for lin in (att.q, att.k, att.v):
            heads[lin] = att.num_heads
    for key, plan in config.plans.items():
        for att in _attention_modules(model.get_submodule(key)):
            for lin in (att.q, att.k, att.v):
                head_ratios[lin] = plan.head_ratio
                if plan.head_ratio:  # torch-pruning only visits q/k/v groups that have a ratio of their own
                    ratios[lin] = plan.head_ratio
    if ratios or any(head_ratios.values()):
        ignored = [model.get_submodule(k) for k in config.ignore]
        # Everything not planned stays whole: its layers are ignored, so a group reaching them is kept.
        planned = {m for k in config.plans for m in model.get_submodule(k).modules()}
        ignored += [m for m in model.modules() if m not in planned and not list(m.children())]
        # Free-standing parameters (missing tokens, positions, [CLS]) follow the width of their last axis.
        unwrapped = [
            (p, p.dim() - 1)
            for m in model.modules()
            if type(m) not in _SHAPE_ATTRS
            for p in m.parameters(recurse=False)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.BasePruner(
                model,
                example_inputs,
                importance=_IMPORTANCE[config.importance](tp),
                global_pruning=config.global_ranking,
                pruning_ratio=0.0,
                pruning_ratio_dict=ratios,
                ignored_layers=ignored,
                round_to=config.round_to,
                num_heads=heads,
                prune_num_heads=any(head_ratios.values()),
                prune_head_dims=False,
                head_pruning_ratio_dict=head_ratios or None,
                unwrapped_parameters=unwrapped,
                forward_fn=lambda m, x: m(**x),
            )
            if calibration is not None:
                model.zero_grad()
                calibration(model).backward()
            pruner.step()
            model.zero_grad(set_to_none=True)
        for att in _attention_modules(model):
            att.num_heads = pruner.num_heads[att.q]
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    after = count(model, example_inputs)
    model.edgefuse_pruned = {"depth": depth, "vocab": config.vocab_embedding}
    return model, PruneReport(before, after, remap)


def _remap_example(example: dict, remap: np.ndarray) -> dict:
    out = dict(example)
    for k, v in example.items():
        if k.endswith("ids"):
            r = torch.from_numpy(remap).long()[v]
            out[k] = torch.where(r < 0, torch.zeros_like(r), r)
    return out


# ------------------------------------------------------------------ save / load without pickle
_SHAPE_ATTRS = {
    nn.Linear: ("in_features", "out_features"),
    nn.Conv2d: ("in_channels", "out_channels"),
    nn.Conv1d: ("in_channels", "out_channels"),
    nn.BatchNorm2d: ("num_features",),
    nn.BatchNorm1d: ("num_features",),
    nn.LayerNorm: ("normalized_shape",),
    nn.Embedding: ("num_embeddings", "embedding_dim"),
}


def save_pruned(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """`config.json` (registry name/cfg + kept blocks + every module's shape attributes) + `model.safetensors`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shapes = {}
    for name, mod in model.named_modules():
        attrs = _SHAPE_ATTRS.get(type(mod))
        if attrs:
            shapes[name] = {a: getattr(mod, a) for a in attrs}
        if hasattr(mod, "num_heads"):
            shapes.setdefault(name, {})["num_heads"] = mod.num_heads
    config = {
        **getattr(model, "edgefuse_config", {}),
        "pruned": {**getattr(model, "edgefuse_pruned", {}), "shapes": shapes},
        "meta": meta or {},
    }
    (path / "config.json").write_text(json.dumps(config, indent=2, default=list))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    return path


def load_pruned(path: str | Path) -> nn.Module:
    """Rebuild the unpruned model from the registry, shrink it to the saved shapes, load the weights (strict)."""
    from safetensors.torch import load_file

    from edgefuse.models.checkpoint import rebuild

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model = rebuild(config)
    pruned = config["pruned"]
    for key, kept in pruned.get("depth", {}).items():
        mod = model.get_submodule(key)
        mod.blocks = nn.ModuleList(mod.blocks[i] for i in kept)
    state = load_file(str(path / "model.safetensors"))
    for name, attrs in pruned["shapes"].items():
        parent, _, attr = name.rpartition(".")
        mod = model.get_submodule(name)
        if isinstance(mod, nn.Embedding):
            new = nn.Embedding(attrs["num_embeddings"], attrs["embedding_dim"])
            setattr(model.get_submodule(parent) if parent else model, attr, new)
            continue
        for a, v in attrs.items():
            setattr(mod, a, tuple(v) if isinstance(v, list) else v)
    # Parameters and buffers take the saved shapes; values come from the state dict.
    for name, tensor in state.items():
        owner, _, leaf = name.rpartition(".")
        mod = model.get_submodule(owner) if owner else model
        current = getattr(mod, leaf)
        if isinstance(current, nn.Parameter):
            setattr(mod, leaf, nn.Parameter(torch.empty_like(tensor), requires_grad=current.requires_grad))
        elif isinstance(current, torch.Tensor):
            mod.register_buffer(leaf, torch.empty_like(tensor))
    model.load_state_dict(state, strict=True)
    model.edgefuse_config = {"name": config["name"], "cfg": config["cfg"]}
    model.edgefuse_pruned = {k: v for k, v in pruned.items() if k != "shapes"}
    return model.eval()
