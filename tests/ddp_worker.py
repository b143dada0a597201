"""Run by tests/test_ddp.py under ``torchrun --nproc_per_node 2`` (Gloo, CPU); not a test module.

    ddp_worker.py gather OUT            # gather's rows and gradients against one process's
    ddp_worker.py train OUT BUILD...    # pretextgen.train on each build, 1 epoch, then a resume
Each rank writes OUT/rank<R>.json with what it saw.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def gather_check(out: Path) -> dict:
    import torch.distributed as dist

    from pretextgen.training.losses import gather, info_nce

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    # every rank can make every rank's rows (seeded by rank), so each checks against one process's loss
    rows = [torch.randn(3 + r, 8, generator=torch.Generator().manual_seed(r)) for r in range(world)]
    groups = torch.arange(sum(len(r) for r in rows)) // 2
    mine = rows[rank].clone().requires_grad_(True)
    loss, _ = info_nce(gather(mine), groups, 0.5)
    loss.backward()
    full = torch.cat(rows).requires_grad_(True)
    reference, _ = info_nce(full, groups, 0.5)
    reference.backward()
    start = sum(len(r) for r in rows[:rank])
    expected = world * full.grad[start:start + len(mine)]  # DDP divides the weights' gradients by world
    return {"loss": loss.item(), "reference": reference.item(),
            "grad_error": float((mine.grad - expected).abs().max()), "grad_scale": float(expected.abs().max())}


def train_all(out: Path, builds: list[str]) -> dict:
    import pretextgen

    seen = {}
    for build in builds:
        name = Path(build).name
        kw = dict(data=build, epochs=2, batch_size=4, overrides=["num_workers=0", "threads=1"], progress=False,
                  device="cpu")
        first = pretextgen.train(out=out / f"run-{name}", until_epoch=1, **kw)
        resumed = pretextgen.train(out=out / f"run-{name}", resume=True, **kw)
        seen[name] = {"first_step": first["step"], "step": resumed["step"], "loss": resumed["loss"]}
    return seen


def main(argv) -> int:
    mode, out = argv[0], Path(argv[1])
    result = gather_check(out) if mode == "gather" else train_all(out, argv[2:])
    result["world_size"] = int(os.environ["WORLD_SIZE"])
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(result))
    import torch.distributed as dist

    dist.destroy_process_group()  # Gloo aborts the process at exit otherwise ("terminate called ...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
