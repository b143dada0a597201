"""Training on many processes: ``torchrun --nproc_per_node 2`` on CPU (Gloo) trains every
recipe (the video ones too), resumes, and the contrastive losses see every rank's rows with gradients flowing back."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pretextgen
from pretextgen.registry import get_task, list_tasks

from helpers import TINY

WORKER = Path(__file__).with_name("ddp_worker.py")
TRAINABLE = [n for n in list_tasks() if get_task(n).trainer]


def torchrun(*args) -> str:
    """Run ``args`` (a script and its arguments, or ``-m module ...``) in 2 processes; their stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_gather_gives_every_rank_all_rows_and_sends_gradients_home(tmp_path):
    torchrun(WORKER, "gather", tmp_path)
    for r in ranks(tmp_path):
        assert r["world_size"] == 2
        assert r["loss"] == pytest.approx(r["reference"], rel=1e-6)
        assert r["grad_error"] <= 1e-6 * max(1.0, r["grad_scale"]) and r["grad_scale"] > 0


def test_torchrun_trains_and_resumes_every_recipe(tmp_path):
    builds = []
    for name in TRAINABLE:
        out = tmp_path / name
        pretextgen.build(task=name, out=out, samples=16, overrides=TINY.get(name, {}), backend="opencv", progress=False)
        builds.append(out)
    torchrun(WORKER, "train", tmp_path, *builds)
    r0, r1 = ranks(tmp_path)
    assert set(r0) - {"world_size"} == set(TRAINABLE)
    for name in TRAINABLE:
        # 16 samples split over 2 ranks, batches of 4: 2 steps an epoch on each rank
        assert r0[name]["first_step"] == r1[name]["first_step"] == 2, name
        assert r0[name]["step"] == r1[name]["step"] == 4, name
        assert math.isfinite(r0[name]["loss"]), name
        saved = json.loads((tmp_path / f"run-{name}" / "config.json").read_text())
        assert saved["world_size"] == 2 and saved["samples_per_epoch"] == 16
        assert (tmp_path / f"run-{name}" / "checkpoint.pt").exists()


def test_the_cli_under_torchrun_prints_one_line_and_exits_cleanly(tmp_path):
    data = tmp_path / "build"
    pretextgen.build(task="contrastive", out=data, samples=16, overrides=TINY["contrastive"], backend="opencv",
                     progress=False)
    out = torchrun("-m", "pretextgen.cli", "train", "--data", data, "--out", tmp_path / "run", "--epochs", "1",
                   "--batch-size", "4", "--set", "num_workers=0", "--set", "extra.loss=triplet", "--no-progress")
    lines = [line for line in out.splitlines() if line.startswith("contrastive: epoch 1/1")]
    assert len(lines) == 1, out
