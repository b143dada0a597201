"""The video recipes' own rules (the runs, losses on a fixed batch and exact resumes are in
test_train, parametrised over every task): video colorization's pointer copies the colours of the
positions it matches, its clusters come from the build; track never reads the stored label and
leaves its own clip out of the hard negatives; frame order's sample mix. Then every video trunk
through `pretextgen eval` (image probe, DAVIS propagation, the pretext on unseen clips) and the
baselines of the clips evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pretextgen
from pretextgen.config import load_params
from pretextgen.errors import PretextgenError
from pretextgen.registry import get_task
from pretextgen.training.clips_eval import LABELS
from pretextgen.training.recipe import build_recipe, resolve_config
from pretextgen.training.recipes.video import point_and_copy

from helpers import TINY, davis_folder, labeled_folder, moving_square_video


def test_the_pointer_copies_the_colours_of_the_positions_it_matches():
    """Target features that equal the reference's at shifted positions copy the reference's cluster
    ids shifted the same way; a lower temperature makes the copy sharper."""
    g = torch.Generator().manual_seed(0)
    h = w = 4
    ref = torch.nn.functional.normalize(torch.randn(1, 8, h, w, generator=g), dim=1) * 4
    ids = torch.randint(0, 5, (1, h, w), generator=g)
    shifted = torch.roll(ref, shifts=(1, 2), dims=(2, 3))
    probs = point_and_copy(shifted[:, None], ref, ids, 5, temperature=0.05)
    assert probs.shape == (1, 1, 5, h, w)
    torch.testing.assert_close(probs.sum(2), torch.ones(1, 1, h, w))
    assert torch.equal(probs.argmax(2)[0, 0], torch.roll(ids, shifts=(1, 2), dims=(1, 2))[0])
    soft = point_and_copy(shifted[:, None], ref, ids, 5, temperature=10.0)
    assert soft.max(2).values.mean() < probs.max(2).values.mean()


@pytest.fixture(scope="module")
def colour_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("vc")
    pretextgen.build(task="video_colorization", out=out, samples=8, overrides=TINY["video_colorization"],
                     backend="opencv", progress=False)
    return out


def test_video_colorization_reads_the_builds_clusters(colour_build, tmp_path):
    from pretextgen.config import make_params
    from pretextgen.shards import read_manifest

    task = get_task("video_colorization")
    params = make_params(task, read_manifest(colour_build)["params"])
    recipe = build_recipe(task, params, resolve_config(task, "cpu"))
    recipe.prepare(colour_build, None)
    centres = np.load(colour_build / "ab_clusters.npy")
    assert torch.equal(recipe.ab_centres, torch.from_numpy(centres)) and centres.shape == (params.clusters, 2)
    with pytest.raises(PretextgenError, match="holds no ab_clusters.npy"):
        recipe.prepare(tmp_path, None)
    np.save(tmp_path / "ab_clusters.npy", centres[:3])
    with pytest.raises(PretextgenError, match="3 colour clusters"):
        recipe.prepare(tmp_path, None)
    with pytest.raises(PretextgenError, match="trains from a build folder"):
        recipe.prepare(None, None)


def _track_batch(sources):
    g = torch.Generator().manual_seed(1)
    n = len(sources)
    return {"patches": torch.randint(0, 256, (n, 3, 3, 16, 16), dtype=torch.uint8, generator=g),
            "label": torch.zeros(n, dtype=torch.int64), "json": [{"source": s} for s in sources]}


def test_track_never_reads_the_negatives_kind_and_mines_only_other_clips():
    task = get_task("track")
    params = load_params(task, overrides=TINY["track"])
    recipe = build_recipe(task, params, resolve_config(task, "cpu")).eval()
    batch = _track_batch(["a.mp4", "a.mp4", "b.mp4", "b.mp4"])
    with torch.no_grad():
        loss, metrics = recipe(batch)
        relabelled, _ = recipe({**batch, "label": torch.tensor([2, 1, 0, 2])})
        assert loss == relabelled and 0 <= metrics["accuracy"] <= 1
        # one clip only: no in-batch negative is left, so only the stored negatives count
        one_clip = _track_batch(["a.mp4"] * 4)
        with_hard, _ = recipe(one_clip)
        recipe.hard = False
        stored_only, _ = recipe(one_clip)
        other_clips, _ = recipe(batch)
    torch.testing.assert_close(with_hard, stored_only)
    assert loss > other_clips  # the hard term adds a positive hinge between other clips' patches


def test_frame_order_keeps_balanced_plans_and_draws_the_papers_mix():
    """ordered_fraction=0.5 keeps the balanced plans byte-identical (the same integer draw);
    0.25 gives a quarter ordered tuples; 0 or 1 (one class) is refused."""
    from pretextgen.tasks.frame_order import FrameOrderParams, plan

    class Index:  # the windows a plan draws from: 4 windows of one 300-frame clip
        sources = [type("S", (), {"path": "c.mp4", "width": 320, "height": 240, "frames": 300})()]

        def cached_windows(self, span, percentile):
            return [(0, 30 * k, 1.0) for k in range(4)]

    def labels(p):
        return [plan(p, np.random.default_rng([7, i]), Index())["label"] for i in range(400)]

    balanced = labels(FrameOrderParams())
    assert balanced == [int(_after_window_and_frames(i).integers(2)) for i in range(400)]
    assert 0.4 < np.mean(balanced) < 0.6
    quarter = labels(FrameOrderParams(ordered_fraction=0.25))
    assert 0.18 < np.mean(quarter) < 0.32
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="ordered_fraction"):
            FrameOrderParams(ordered_fraction=bad).validate()


@pytest.mark.parametrize("extra", [{}, {"differences": False}, {"pooled": True}])
def test_frame_orders_frame_fc_cannot_die(extra):
    """Each frame's fc is batch-normalised before its ReLU: with weights that would make every
    pre-activation negative (what a CPU-preset run reached, loss stuck at ln 2), each unit still
    fires on part of a batch. The head reads the three frame vectors and, by default, their three
    pairwise absolute differences."""
    task = get_task("frame_order")
    params = load_params(task, overrides={"size": 32})
    recipe = build_recipe(task, params, resolve_config(task, "cpu", {"extra": extra}))
    linear = recipe.frame_fc[0]
    torch.nn.init.constant_(linear.weight, -1.0)
    captured = {}
    recipe.frame_fc.register_forward_hook(lambda m, i, o: captured.update(out=o.detach()))
    frames = torch.randint(0, 256, (8, 3, 3, 32, 32), dtype=torch.uint8)
    loss, _ = recipe.loss({"frames": frames, "label": torch.tensor([0, 1] * 4)})
    assert torch.isfinite(loss)
    assert bool((captured["out"] > 0).any(0).all())  # every unit fires on some frame
    width = linear.out_features
    assert recipe.head[0].in_features == (3 if extra.get("differences") is False else 6) * width


def _after_window_and_frames(i):
    """Plan i's generator at the label's draw, as the balanced plans always drew it."""
    rng = np.random.default_rng([7, i])
    rng.integers(4)
    rng.choice(30, 5, replace=False)
    return rng


# ---------------------------------------------------------------- eval --clips and --davis for video trunks
def test_the_baselines_read_the_low_level_cue():
    """Frame differences call a tuple of a sliding square ordered exactly when its outer frames are
    the farthest apart; NCC prefers a patch to itself over a different one."""
    from pretextgen.training.clips_eval import frame_difference_correct, ncc_correct

    frames, _ = moving_square_video(n=8)
    video = np.stack(frames).transpose(0, 3, 1, 2)  # (8, 3, H, W)
    tuples = {(1, 3, 5): 1, (5, 3, 1): 1, (1, 0, 5): 0, (1, 7, 5): 0}
    batch = np.stack([video[list(t)] for t in tuples])
    labels = np.array(list(tuples.values()))
    assert frame_difference_correct(batch, labels).all()
    assert not frame_difference_correct(batch, 1 - labels).any()
    q, other = video[0, :, :32, :32], video[0, :, 40:72, 40:72]
    assert ncc_correct(np.stack([np.stack([q, q, other])])).all()
    assert not ncc_correct(np.stack([np.stack([q, other, q])])).any()


@pytest.fixture(scope="module")
def eval_folders(tmp_path_factory, photos, clips):
    root = tmp_path_factory.mktemp("eval")
    photos_root, _ = photos
    labeled = labeled_folder(root / "labeled", photos_root, n_train=4, n_test=3)
    squares = {f"square{k}": moving_square_video(n=4, seed=k) for k in range(2)}
    return labeled, davis_folder(root / "davis", squares), clips


@pytest.mark.parametrize("name", ["frame_order", "track", "video_colorization"])
def test_every_video_trunk_evaluates_end_to_end(name, eval_folders, tmp_path, capsys):
    """A tiny run of each video task, then one `pretextgen eval` with the image probe, DAVIS
    propagation (two synthetic sequences of a sliding square) and, for frame_order and track, the
    pretext on clips: every figure in [0, 1], the random trunks their seeds' mean."""
    import json

    from pretextgen.cli import main

    labeled, davis_dir, clips = eval_folders
    # frame_order trains on Misra et al.'s mix; its clips build is balanced all the same
    mix = {"ordered_fraction": 0.25} if name == "frame_order" else {}
    pretextgen.build(task=name, out=tmp_path / "b", samples=16, overrides={**TINY[name], **mix}, backend="opencv",
                     progress=False)
    pretextgen.train(data=tmp_path / "b", out=tmp_path / "r", epochs=1, batch_size=8, overrides=["num_workers=0"],
                     progress=False, device="cpu")
    args = ["eval", "--checkpoint", str(tmp_path / "r"), "--data", str(labeled), "--davis", str(davis_dir),
            "--json", str(tmp_path / "e.json"), "--no-progress"]
    if name == "video_colorization":
        assert main(args + ["--clips", str(clips)]) == 2
        assert "--clips scores frame_order and track" in capsys.readouterr().err
        assert main(args) == 0
    else:
        assert main(args + ["--clips", str(clips), "--clips-samples", "12"]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["task"] == name and list(out["pretext"]) == ["block1", "block2", "block3"]
    for m in ("pretext", "random", "pixels", "flow", "copy_first"):
        assert all(0 <= v <= 1 for v in out["davis"][m].values())
    if name == "video_colorization":
        assert "clips" not in out
        return
    c = out["clips"]
    assert c["samples"] == 12 and all(0 <= c[k] <= 1 for k in ("pretext", "random", "baseline"))
    assert c["random"] == pytest.approx(np.mean([s["accuracy"] for s in c["random_seeds"]]), abs=1e-3)
    assert c["params_changed"] == ({"min_ncc": -1.0} if name == "track" else {"ordered_fraction": 0.5})
    # by label: the counts add up, and the overall figures are their weighted means
    parts = c["by_label"].values()
    assert sum(r["samples"] for r in parts) == 12 and set(c["by_label"]) <= set(LABELS[name])
    for key in ("pretext", "random", "baseline"):
        assert c[key] == pytest.approx(sum(r[key] * r["samples"] for r in parts) / 12, abs=1e-3)
    assert "on unseen clips (12 samples" in capsys.readouterr().out


def _error(capsys, argv) -> str:
    from pretextgen.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pretextgen: error: "), err
    return err[0]


def test_compare_takes_video_tasks_and_refuses_the_wrong_source(eval_folders, photos, tmp_path, capsys):
    """`pretextgen compare` builds video tasks from --video-source and evaluates them on DAVIS and unseen
    clips without a labeled folder; a missing or wrong-kind source, or nothing to evaluate on, is one
    line before any work."""
    import json

    from pretextgen.cli import main

    _, davis_dir, clips = eval_folders
    out = str(tmp_path / "cmp")
    assert "give --video-source DIR" in _error(capsys, ["compare", "--tasks", "track", "--source", str(photos[0]),
                                                         "--davis", str(davis_dir), "--out", out])
    assert "holds photos" in _error(capsys, ["compare", "--tasks", "track", "--video-source", str(photos[0]),
                                             "--davis", str(davis_dir), "--out", out])
    assert "holds clips" in _error(capsys, ["compare", "--tasks", "rotation", "--source", str(clips),
                                            "--labeled", str(photos[0]), "--out", out])
    assert "give --labeled or --davis" in _error(capsys, ["compare", "--tasks", "video_colorization",
                                                          "--video-source", str(clips), "--clips", str(clips),
                                                          "--out", out])
    assert not (tmp_path / "cmp").exists()
    assert main(["compare", "--tasks", "video_colorization", "frame_order", "--video-source", str(clips),
                 "--davis", str(davis_dir), "--clips", str(clips), "--clips-samples", "8", "--samples", "16",
                 "--epochs", "1", "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "DAVIS J&F: pretext / random / pixels / flow" in printed and "unseen clips: pretext" in printed
    rows = {r["task"]: r for r in json.loads((tmp_path / "cmp" / "compare.json").read_text())}
    assert set(rows) == {"video_colorization", "frame_order"}
    assert rows["frame_order"]["clips"]["samples"] == 8 and "clips" not in rows["video_colorization"]
    assert all(0 <= r["davis"]["pretext"]["JF"] <= 1 and r["best_stage"] == "davis J&F" for r in rows.values())
