import socket

import numpy as np
import pytest
import torch

from edgefuse.compress.distill import DistillConfig, distill
from edgefuse.models import AVTConfig, create_model, load_splits

SIZES = {"train": 256, "val": 64}


def _models():
    torch.manual_seed(0)
    teacher = create_model("avt-fusion", fusion="gated", text_dim=32, text_depth=1, image_widths=(8, 16, 16, 32))
    torch.manual_seed(1)
    student = create_model("avt-fusion", fusion="gated", text_dim=16, text_depth=1, image_widths=(8, 8, 16, 16))
    return teacher.eval(), student


def test_distillation_lowers_the_loss_and_resumes(tmp_path):
    teacher, student = _models()
    splits = load_splits(AVTConfig(sizes=SIZES), cache=False)
    cfg = DistillConfig(epochs=3, batch_size=32, patience=5, checkpoint=str(tmp_path / "ck"), feature_weight=0.1)
    student, logs = distill(student, teacher, splits, cfg)
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert (tmp_path / "ck" / "state.pt").exists()
    # Resuming a finished run trains nothing more and restores the best weights.
    _, again = distill(_models()[1], teacher, splits, DistillConfig(**{**cfg.__dict__, "resume": True}))
    assert [r["loss"] for r in again] == [r["loss"] for r in logs]


def test_bad_distill_config_is_named():
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=1.5)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    teacher, student = _models()
    splits = load_splits(AVTConfig(sizes=SIZES), cache=False)
    _, logs = distill(student, teacher, splits, DistillConfig(epochs=2, batch_size=32, patience=5))
    flat = torch.cat([p.detach().flatten() for p in student.parameters()]).numpy()
    np.save(f"{out}/rank{rank}.npy", flat)
    np.save(f"{out}/loss{rank}.npy", np.array([r["loss"] for r in logs]))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_process_gloo_ddp_keeps_ranks_identical_and_learns(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(a, b)
    loss = np.load(tmp_path / "loss0.npy")
    assert loss[-1] < loss[0]


def test_iterative_prune_distill_reaches_the_single_shot_shape():
    from edgefuse.compress.prune import PruneConfig, PrunePlan, prune
    from edgefuse.compress.recipe import prune_distill_steps

    teacher, _ = _models()
    splits = load_splits(AVTConfig(sizes=SIZES), cache=False)
    example = {k: torch.from_numpy(v) for k, v in splits["train"].inputs(np.arange(2)).items()}
    plan = PruneConfig(plans={"image": PrunePlan(0.5), "audio": PrunePlan(0.5)}, round_to=1, ignore=["head"])
    student, report, logs, seconds = prune_distill_steps(
        teacher, splits, example, plan, DistillConfig(epochs=2, batch_size=64), steps=2
    )
    one_shot, _ = prune(_models()[0], example, plan)
    shape = lambda m: [c.out_channels for c in m.image.modules() if isinstance(c, torch.nn.Conv2d)]
    assert shape(student) == pytest.approx(shape(one_shot), abs=1)
    assert len(logs) == 2 and seconds["distill"] > 0
    assert report.after["total"]["params"] < report.before["total"]["params"]
    assert sum(p.numel() for p in teacher.parameters()) == report.before["total"]["params"]  # teacher untouched
