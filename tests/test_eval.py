"""``pretextgen eval`` (pretextgen.training.probe) on real photos: a tiny labeled folder cut from
scikit-image's photos (one class per photo), a tiny run of a rotation-like toy task that this module
registers (its own small recipe), saved with the trainer's ``save_run``."""
from __future__ import annotations

import csv
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import temporary_task
from pretextgen.cli import main
from pretextgen.registry import get_task, list_tasks
from pretextgen.training.models import SmallConvTrunk
from pretextgen.training.recipe import Recipe
from pretextgen.training.trainer import METRICS_COLUMNS

ev = importlib.import_module("pretextgen.training.probe")
TASK = "toy_eval_rotation"
PHOTOS = ("astronaut.png", "coins.png", "chelsea.png")  # colour portrait, gray coins, a cat: one class each
N_TRAIN, N_TEST = 12, 6


# ---------------------------------------------------------------- a toy task with its own tiny recipe
@dataclass(frozen=True)
class ToyParams:
    min_side: int = 32


class ToyRotation(Recipe):
    """RotNet in miniature: a two-block SmallConvTrunk (8-16 channels) and a 4-way head."""

    accuracy = "top-1 of the toy's 4-way rotation classifier"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = SmallConvTrunk(3, widths=(8, 16))
        self.head = torch.nn.Linear(16, 4)

    @property
    def eval_size(self) -> int:
        return 32

    def eval_input(self, images):
        return images.float() / 127.5 - 1.0

    def eval_features(self, x):
        return self.trunk.features(x)

    def loss(self, batch):
        logits = self.head(self.trunk(self.eval_input(batch["image"])))
        return F.cross_entropy(logits, batch["label"]), {"accuracy": (logits.argmax(1) == batch["label"]).float().mean().item()}


def _toy_task():
    from pretextgen.registry import Task, TrainerSpec

    return Task(name=TASK, params=ToyParams, plan=lambda p, rng, width, height: {}, finish=lambda p, views, plan: {},
                fields=(), num_classes=lambda p: 4, summary="rotation in miniature (a test's task)", paper="none",
                trainer=TrainerSpec(recipe="test_eval:ToyRotation", presets={"cpu": {"epochs": 1, "batch_size": 16}}))


# ---------------------------------------------------------------- fixtures: a labeled folder and a run
def _crops(photo: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n random crops of a photo, some of them not square (eval center-crops those)."""
    h, w = photo.shape[:2]
    out = []
    for _ in range(n):
        side = int(rng.integers(48, min(h, w) // 2))
        cw = side if rng.random() < 0.5 else min(w, int(side * 1.5))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - cw + 1))
        out.append(photo[y:y + side, x:x + cw])
    return out


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, photos) -> Path:
    """LABELED_DIR with train/ (PNG) and val/ (JPEG) crops of three photos; coins stays gray."""
    root, _ = photos
    out = tmp_path_factory.mktemp("labeled")
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        flag = cv2.IMREAD_GRAYSCALE if name == "coins.png" else cv2.IMREAD_COLOR
        photo = cv2.imread(str(root / name), flag)
        for split, n, ext in (("train", N_TRAIN, "png"), ("val", N_TEST, "jpg")):
            (out / split / Path(name).stem).mkdir(parents=True)
            for i, crop in enumerate(_crops(photo, n, rng)):
                assert cv2.imwrite(str(out / split / Path(name).stem / f"{i:03d}.{ext}"), crop)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, labeled):
    """RUN_DIR/checkpoint.pt of the toy task after a few rotation steps on the labeled train crops
    (batch-norm statistics moved off their initial values), and a metrics.csv; the toy task stays
    registered while this module's tests run."""
    from pretextgen.config import params_to_dict
    from pretextgen.training.checkpoint import save_run
    from pretextgen.training.recipe import TrainConfig, build_recipe

    run_dir = tmp_path_factory.mktemp("run")
    with temporary_task(_toy_task()) as task:
        params, config = ToyParams(), TrainConfig(epochs=1, batch_size=16, lr=0.05)
        recipe = build_recipe(task, params, config)
        items = ev.labeled_split(labeled)[1]
        images = torch.from_numpy(np.stack([ev.load_square(p, 32) for p, _ in items]).transpose(0, 3, 1, 2).copy())
        rotated = torch.cat([torch.rot90(images, r, dims=(2, 3)) for r in range(4)])
        labels = torch.arange(4).repeat_interleave(len(images))
        opt = torch.optim.SGD(recipe.parameters(), lr=config.lr, momentum=0.9)
        gen = torch.Generator().manual_seed(0)
        recipe.train()
        for step in range(12):
            idx = torch.randperm(len(rotated), generator=gen)[:32]
            loss, metrics = recipe.loss({"image": rotated[idx], "label": labels[idx]})
            opt.zero_grad()
            loss.backward()
            opt.step()
        save_run(run_dir / "checkpoint.pt", task=TASK, params=params_to_dict(params), config=config.to_dict(),
                 model=recipe.state_dict(), epoch=1, step=12)
        with open(run_dir / "metrics.csv", "w", newline="") as f:  # as the trainer writes it
            w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
            w.writeheader()
            w.writerows([{"epoch": 1, "step": 6, "loss": 1.2, "accuracy": 0.41, "kind": "epoch"},
                         {"epoch": 2, "step": 9, "loss": 0.2, "accuracy": 0.97, "kind": "steps"},
                         {"epoch": 2, "step": 12, "loss": 0.1, "accuracy": 0.99, "kind": "epoch"}])
        yield run_dir


@pytest.fixture(scope="module")
def result(run, labeled, tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "eval.json"
    out = ev.evaluate(run / "checkpoint.pt", labeled, json_path=path, progress=False)
    return out, json.loads(path.read_text())


# ---------------------------------------------------------------- (b) end to end, the JSON
def test_evaluate_writes_the_json_with_every_row(result):
    out, data = result
    assert data == out  # the returned dict is the JSON, JSON-native
    assert {"task", "pretext", "random", "pixels", "pretext_accuracy"} <= set(data)
    assert data["task"] == TASK
    assert list(data["pretext"]) == list(data["random"]) == ["block1", "block2"]
    rows = [*data["pretext"].values(), *data["random"].values(), data["pixels"]]
    for row in rows:
        assert set(row) == {"linear", "knn"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in row.values())
    assert data["pretext_accuracy"] == pytest.approx(0.99)  # metrics.csv's last epoch
    assert data["pretext_accuracy_meaning"] == ToyRotation.accuracy
    assert (data["k"], data["temperature"], data["pool"]) == (20, 0.07, {"stages": 4, "pixels": 8})
    assert data["classes"] == sorted(Path(p).stem for p in PHOTOS) and data["test_folder"] == "val"
    assert (data["train_images"], data["test_images"], data["unreadable"]) == (3 * N_TRAIN, 3 * N_TEST, [])
    # Three photos are easy to tell apart from their colours: far better than chance, even
    # with 12 train images a class.
    assert data["pixels"]["linear"] >= 0.6 and data["pixels"]["knn"] >= 0.6  # chance: 1/3
    # The random baseline is the mean of three trunks of their own seeds, each kept.
    seeds = data["random_seeds"]
    assert len(seeds) == ev.RANDOM_SEEDS == 3 and len({s["seed"] for s in seeds}) == 3
    for stage, mean in data["random"].items():
        for m in ("linear", "knn"):
            assert mean[m] == pytest.approx(np.mean([s["stages"][stage][m] for s in seeds]), abs=2e-4)
    assert set(data["gain"]) == set(data["gain_ci"]) == set(data["pretext"])


def test_eval_reports_alignment_and_uniformity_for_pretext_and_random_trunks(result):
    _, data = result
    au = data["alignment_uniformity"]
    assert au["images"] == 3 * N_TEST
    for row in (au["pretext"], au["random"], *au["random_seeds"]):
        assert set(row) == {"alignment", "uniformity"}
        # unit vectors: squared distances in [0, 4]; uniformity log(mean exp(-2 d^2)) in [-8, 0]
        assert 0 <= row["alignment"] <= 4 and -8 <= row["uniformity"] <= 0
    assert au["random"]["alignment"] == pytest.approx(np.mean([r["alignment"] for r in au["random_seeds"]]), abs=2e-4)
    assert len(au["random_seeds"]) == ev.RANDOM_SEEDS
    assert any(line.startswith("alignment / uniformity") for line in ev.report(data))


def test_the_two_augmented_views_differ_and_repeat_from_the_seed(photos):
    image = ev.load_square(str(photos[0] / photos[1][0]), 32)
    a = ev.augmented_views(image, np.random.default_rng([0, 5]))
    b = ev.augmented_views(image, np.random.default_rng([0, 5]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == a[1].shape == image.shape and not np.array_equal(a[0], a[1])


def _accuracies(data: dict) -> list:
    """Every accuracy of ``evaluate``'s dict (None where there is none)."""
    rows = [*data["pretext"].values(), *data["random"].values(), data["pixels"]]
    b = data["best"]
    return [v for row in rows for v in row.values()] + [data["pretext_accuracy"], b["linear"],
                                                        b["random_same_stage"], b["random_best"]]


def _at_most_4_decimals(v) -> bool:
    return v is None or float(f"{v:.4f}") == v


def test_json_accuracies_have_at_most_4_decimals(result):
    _, data = result
    accs = _accuracies(data)
    assert all(_at_most_4_decimals(v) for v in accs), accs
    # 18 test images: most top-1s are k/18, which need more than 4 decimals unrounded.
    assert any(round(v * 18) / 18 != v for v in accs if v is not None)
    assert data["best"]["gain_points"] == round(100 * (data["best"]["linear"] - data["best"]["random_best"]), 2)
    # An older eval.json (compare reuses one) is rounded the same way, and rounding twice changes nothing.
    raw = {**data, "pixels": {"linear": 2 / 3, "knn": 1 / 7}, "pretext_accuracy": 0.912345678}
    again = ev.round_accuracies(raw)
    assert again["pixels"] == {"linear": 0.6667, "knn": 0.1429} and again["pretext_accuracy"] == 0.9123
    assert ev.round_accuracies(again) == again and again["k"] == data["k"] and again["l2"] == data["l2"]


def test_compare_table_says_what_each_pretext_accuracy_is(result):
    from pretextgen.training.compare import round_summary, table

    out, _ = result
    rows = [{**out, "train_seconds": 3.0},
            {**out, "train_seconds": 3.0, "task": "inpainting", "pretext_accuracy": None,
             "pretext_accuracy_meaning": "none measured: the loss is a weighted L2 regression of the target's pixels"}]
    lines = table(rows)
    assert lines[2].startswith(f"| {TASK} | 99.0 |") and lines[3].startswith("| inpainting |  |")
    notes = lines[lines.index("") + 1:]
    assert notes == [f"- pretext acc, {TASK}: {ToyRotation.accuracy}",
                     "- pretext acc, inpainting: none measured: the loss is a weighted L2 regression of the target's "
                     "pixels"]
    summary = round_summary({"task": TASK, "accuracy": 0.987654321, "data_wait": 0.123, "loss": 0.123456789})
    assert (summary["accuracy"], summary["data_wait"], summary["loss"]) == (0.9877, 0.123, 0.123456789)
    assert round_summary({"accuracy": None})["accuracy"] is None


@pytest.mark.parametrize("task", [t for t in list_tasks() if get_task(t).trainer is not None])
def test_every_bundled_recipe_says_what_its_accuracy_measures(task):
    from pretextgen.training.recipe import recipe_class

    said = recipe_class(get_task(task)).accuracy
    kind = {"rotation": "top-1 of the 4-way", "jigsaw": "top-1 of the permutation", "context": "top-1 of the 8-way",
            "exemplar": "most similar other patch", "contrastive": "most similar other view",
            "colorization": "per-pixel top-1", "splitbrain": "mean of two per-pixel top-1s",
            "inpainting": "none measured", "mae": "none measured", "cpc": "whose most similar candidate",
            "frame_order": "top-1 of the 2-way", "track": "nearer their tracked positive",
            "video_colorization": "copied colour cluster"}
    assert said and kind[task] in said


def test_report_shows_all_rows_protocol_and_the_shortcut_flag(result):
    out, _ = result
    lines = ev.report(out)
    assert not any("\n" in line for line in lines)
    text = " ".join(line.strip() for line in lines)
    for row in ("pretext block1", "pretext block2", "random block1", "random block2", "raw pixels"):
        assert row in text
    assert "k=20, T=0.07" in text and "4x4" in text and "8x8" in text and "80/20" in text
    assert f"pretext accuracy (last epoch): 99.0% ({TASK}: {ToyRotation.accuracy})" in text
    assert "points over the random trunk" in text
    none = " ".join(line.strip() for line in ev.report({**out, "pretext_accuracy": None}))
    assert f"pretext accuracy (last epoch): not recorded ({TASK}: {ToyRotation.accuracy})" in none
    # pretext accuracy is 0.99 here: flagged when the best gain's interval does not clear zero
    assert out["shortcut"] == (out["best"]["gain_ci_points"][0] <= 0)
    assert ("likely shortcut:" in text) == out["shortcut"]
    flagged = " ".join(line.strip() for line in ev.report({**out, "shortcut": True}))
    assert "likely shortcut: pretext accuracy 99.0%" in flagged
    assert not ev.shortcut(None, [-1.0, 1.0])
    assert not ev.shortcut(0.9, [-1.0, 1.0])
    assert ev.shortcut(0.95, [-1.0, 1.0])  # within the noise counts as a shortcut
    assert ev.shortcut(0.99, [-3.0, -1.0]) and not ev.shortcut(0.99, [0.5, 2.0])
    for s in out["pretext"]:  # every stage's gain, its interval around it, and each seed's row
        lo, hi = out["gain_ci"][s]
        assert lo <= out["gain"][s] <= hi and f"random {s}" in text
    assert "seeds: " in text and "95% interval" in text


def test_the_top_level_functions_stay_functions_after_the_package_is_imported():
    import pretextgen
    import pretextgen.training.probe  # noqa: F401
    import pretextgen.training.trainer  # noqa: F401

    assert pretextgen.evaluate.__module__ == "pretextgen" and pretextgen.train.__module__ == "pretextgen"


def test_pretext_accuracy_reads_the_last_epoch_row_with_one(tmp_path):
    assert ev.pretext_accuracy(tmp_path) is None
    head = ",".join(METRICS_COLUMNS)
    # A run stopped during epoch 3: its steps rows do not count, epoch 2's mean does.
    (tmp_path / "metrics.csv").write_text(f"{head}\n2,10,0.5,0.8,0.1,9,epoch,0\n3,12,0.4,0.9,0.1,9,steps,0\n")
    assert ev.pretext_accuracy(tmp_path) == 0.8
    (tmp_path / "metrics.csv").write_text(f"{head}\n1,5,1.0,,0.1,9,steps,0\n1,5,1.0,,0.1,9,epoch,0\n")
    assert ev.pretext_accuracy(tmp_path) is None  # a task without a pretext accuracy


# ---------------------------------------------------------------- (c) frozen trunk, fixed BN statistics
def test_evaluation_leaves_batch_norm_statistics_alone(run, labeled):
    from pretextgen.training.checkpoint import load_run

    _, _, _, recipe = load_run(run / "checkpoint.pt")
    _, _, _, twin = load_run(run / "checkpoint.pt")
    recipe.train()  # as a caller might leave it: evaluation must still not touch the statistics
    before = ev.bn_state(recipe)
    assert before and any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in before.items())
    items = ev.labeled_split(labeled)[1][:20]
    feats, labels, bad = ev.features(recipe, [twin], items, recipe.eval_size, "cpu", batch_size=8)
    after = ev.bn_state(recipe)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not recipe.training and not any(p.requires_grad for p in recipe.parameters())
    assert len(labels) == 20 and not bad and feats["pretext"]["block1"].shape == (20, 8 * 4 * 4)
    assert feats["pixels"]["pixels"].shape == (20, 3 * 8 * 8)
    # The check can fail: the same pass in train mode moves the statistics.
    recipe.train()
    with torch.no_grad():
        recipe.eval_features(recipe.eval_input(torch.from_numpy(np.stack(
            [ev.load_square(p, 32) for p, _ in items]).transpose(0, 3, 1, 2).copy())))
    moved = ev.bn_state(recipe)
    assert not all(torch.equal(before[k], moved[k]) for k in before if k.endswith("running_mean"))


# ---------------------------------------------------------------- (d) the probe and kNN are honest
def _pixel_set(photos, names, n_train, n_test, seed):
    """(train x, train y, test x, test y): raw-pixel features (8x8 pooled) of random crops of photos."""
    root, _ = photos
    rng = np.random.default_rng(seed)
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for c, name in enumerate(names):
        photo = cv2.cvtColor(cv2.imread(str(root / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for split, n in (("train", n_train), ("test", n_test)):
            for crop in _crops(photo, n, rng):
                s = min(crop.shape[:2])
                xs[split].append(cv2.resize(crop[:s, :s], (32, 32), interpolation=cv2.INTER_AREA))
                ys[split].append(c)
    out = []
    for split in ("train", "test"):
        x = torch.from_numpy(np.stack(xs[split]).transpose(0, 3, 1, 2).copy()).float() / 255
        out += [ev.pixel_features(x), torch.tensor(ys[split])]
    return out


def test_linear_probe_and_knn_separate_photos_and_fall_to_chance_on_shuffled_labels(photos):
    # A gray photo and an orange cat: linearly separable in raw pixels (red minus blue is 0 on every
    # coins crop, above 0.12 on every cat crop).
    tx, ty, sx, sy = _pixel_set(photos, ("coins.png", "chelsea.png"), 60, 20, seed=1)
    probe = ev.linear_probe(tx, ty, sx, sy, 2)
    assert probe["accuracy"] == 1.0 and probe["converged"] and probe["l2"] in ev.L2_GRID
    a, b = ev.standardise(tx, sx)
    assert ev.knn_top1(a, ty, b, sy, 2) == 1.0
    # Four photos: well above chance with the true labels; train labels shuffled leave nothing to learn,
    # and test, scored with its true labels, falls to chance (1/4): the probe fits on train only.
    tx, ty, sx, sy = _pixel_set(photos, ("astronaut.png", "coins.png", "chelsea.png", "grass.png"), 40, 40, seed=0)
    assert ev.linear_probe(tx, ty, sx, sy, 4)["accuracy"] >= 0.7
    shuffled = ty[torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))]
    a, b = ev.standardise(tx, sx)
    assert abs(ev.linear_probe(tx, shuffled, sx, sy, 4)["accuracy"] - 0.25) <= 0.15
    assert abs(ev.knn_top1(a, shuffled, b, sy, 4) - 0.25) <= 0.15


def test_the_holdout_split_is_stratified_disjoint_and_fixed():
    y = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    fit, held = ev._holdout(y, 0.2, seed=0)
    assert sorted(fit.tolist() + held.tolist()) == list(range(16))
    assert y[held].tolist() == [0, 0, 1]  # 20% of each class (at least one of a class of two or more)
    assert torch.equal(held, ev._holdout(y, 0.2, seed=0)[1])


def test_load_square_center_crops_then_resizes(photos, tmp_path):
    root, _ = photos
    rgb = cv2.cvtColor(cv2.imread(str(root / "astronaut.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb[:256], cv2.COLOR_RGB2BGR))  # 256 x 512
    square = rgb[:256, 128:384]
    assert np.array_equal(ev.load_square(str(path), 256), square)
    assert np.array_equal(ev.load_square(str(path), 64), cv2.resize(square, (64, 64), interpolation=cv2.INTER_AREA))
    assert np.array_equal(ev.load_square(str(path), 300), cv2.resize(square, (300, 300), interpolation=cv2.INTER_LINEAR))


# ---------------------------------------------------------------- (e) the command line
def _eval(capsys, *argv):
    code = main(["eval", *argv, "--no-progress"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_prints_the_table_and_writes_json(run, labeled, tmp_path, capsys):
    code, out, err = _eval(capsys, "--checkpoint", str(run / "checkpoint.pt"), "--data", str(labeled),
                           "--json", str(tmp_path / "e.json"))
    assert code == 0, err
    assert "raw pixels" in out and "random block2" in out and "k=20, T=0.07" in out
    assert f"pretext accuracy (last epoch): 99.0% ({TASK}: top-1 of the toy's" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["task"] == TASK and all(_at_most_4_decimals(v) for v in _accuracies(data))


def test_cli_errors_are_one_line(run, labeled, tmp_path, capsys):
    ckpt = str(run / "checkpoint.pt")
    code, _, err = _eval(capsys, "--checkpoint", str(tmp_path / "nope" / "checkpoint.pt"), "--data", str(labeled))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err and "pretextgen train" in err

    (tmp_path / "flat" / "images").mkdir(parents=True)
    code, _, err = _eval(capsys, "--checkpoint", ckpt, "--data", str(tmp_path / "flat"))
    assert code == 2 and err.count("\n") == 1 and "train/<class>/" in err and "val" in err

    one = tmp_path / "one"
    for split in ("train", "test"):
        (one / split / "astronaut").mkdir(parents=True)
        cv2.imwrite(str(one / split / "astronaut" / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    code, _, err = _eval(capsys, "--checkpoint", ckpt, "--data", str(one))
    assert code == 2 and err.count("\n") == 1 and "at least 2" in err

    if not torch.cuda.is_available():
        code, _, err = _eval(capsys, "--checkpoint", ckpt, "--data", str(labeled), "--device", "cuda")
        assert code == 2 and "no CUDA device" in err


@pytest.mark.slow
@pytest.mark.parametrize("task", ["rotation", "colorization", "cpc"])
def test_a_bundled_recipe_trains_then_evaluates_end_to_end(task, labeled, tmp_path):
    """A real task's run through the CLI (its CPU preset's sample params, one short epoch), then
    `pretextgen eval` on it: the JSON has every stage of the recipe's trunk (colorization's trunk
    sees L, converted from the labeled RGB images)."""
    import pretextgen
    from pretextgen.cli import main
    from pretextgen.registry import get_task

    spec = get_task(task).trainer
    pretextgen.build(task, tmp_path / "b", samples=16, seed=0, backend="opencv", progress=False,
                     overrides=dict(spec.samples["cpu"]))
    assert main(["train", "--data", str(tmp_path / "b"), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--batch-size", "8", "--set", "threads=1", "--no-progress"]) == 0
    assert main(["eval", "--checkpoint", str(tmp_path / "r" / "checkpoint.pt"), "--data", str(labeled),
                 "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["task"] == task and list(out["pretext"]) == list(out["random"]) == ["block1", "block2", "block3"]
    accs = [v for s in ("pretext", "random") for st in out[s].values() for v in st.values()]
    assert all(0 <= a <= 1 for a in accs + list(out["pixels"].values()))
    from pretextgen.training.recipe import recipe_class

    assert out["pretext_accuracy_meaning"] == recipe_class(get_task(task)).accuracy
    assert all(_at_most_4_decimals(v) for v in _accuracies(out))
    if task == "cpc":  # read as CPC reads an image: the training grid of patches, features averaged
        p = spec.samples["cpu"]
        assert out["protocol"]["name"] == "grid" and out["protocol"]["cells"] == p["grid"]
        assert (out["protocol"]["patch"], out["protocol"]["step"]) == (p["patch"], p["stride"])


@pytest.mark.slow
def test_compare_builds_trains_evaluates_and_reuses_what_exists(labeled, tmp_path, capsys, photos):
    from pretextgen.cli import main

    args = ["compare", "--tasks", "rotation", "--source", str(photos[0]), "--labeled", str(labeled),
            "--out", str(tmp_path / "cmp"), "--samples", "16", "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "| rotation |" in first and "gain" in first
    assert "- pretext acc, rotation: top-1 of the 4-way rotation classifier" in first
    (row,) = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(_at_most_4_decimals(v) for v in _accuracies(row) + [row["best_gain"], row["train_summary"]["accuracy"]])
    for name in ("build/manifest.json", "run/checkpoint.pt", "eval.json", "times.json"):
        assert (tmp_path / "cmp" / "rotation" / name).exists(), name
    stamp = (tmp_path / "cmp" / "rotation" / "eval.json").stat().st_mtime_ns
    assert main(args) == 0  # everything exists: reused, the same table
    assert capsys.readouterr().out.splitlines()[:3] == first.splitlines()[:3]
    assert (tmp_path / "cmp" / "rotation" / "eval.json").stat().st_mtime_ns == stamp


def test_the_gain_interval_is_a_paired_bootstrap_over_test_images():
    """``gain_interval`` resamples per-image differences: a sure gain has a point interval, a gain
    that is half +1 half -1 straddles zero, more images narrow it, and it is the same every run."""
    assert ev.gain_interval(np.ones(400)) == [1.0, 1.0]
    noise = np.tile([1.0, -1.0], 200)
    lo, hi = ev.gain_interval(noise)
    assert lo < 0 < hi and ev.gain_interval(noise) == [lo, hi]
    wide = ev.gain_interval(np.tile([1.0, -1.0, 0.0, 0.0], 25))
    narrow = ev.gain_interval(np.tile([1.0, -1.0, 0.0, 0.0], 2500))
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5
    # Paired: the pretext and random sides are scored on the same resampled images, so a constant
    # per-image offset gives a point interval however noisy each side is alone.
    rng = np.random.default_rng(0)
    random_side = rng.integers(0, 2, 1000).astype(float)
    assert ev.gain_interval(np.minimum(random_side + 0.1, 1.1) - random_side) == pytest.approx([0.1, 0.1])


# ---------------------------------------------------------------- (e) controls: the judge can fail
def test_test_images_under_the_wrong_class_folders_score_below_chance(run, labeled, tmp_path):
    """The same images, val moved one class along: every row that tells the photos apart must now
    be wrong on them (the labels reach the score; nothing else does)."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(labeled / "train", moved / "train")
    classes = sorted(p.name for p in (labeled / "val").iterdir())
    for k, c in enumerate(classes):
        shutil.copytree(labeled / "val" / c, moved / "val" / classes[(k + 1) % len(classes)])
    true = ev.evaluate(run, labeled, progress=False)
    wrong = ev.evaluate(run, moved, progress=False)
    assert true["pixels"]["linear"] >= 0.6
    for rows in ("pretext", "random"):
        for stage, scores in wrong[rows].items():
            # correct before + correct after <= 1: an image's prediction matches one folder at most
            assert scores["linear"] <= 1 - true[rows][stage]["linear"] + 1e-9, (rows, stage)
    assert wrong["pixels"]["linear"] <= 1 - true["pixels"]["linear"] + 1e-9


def test_the_pretext_and_random_rows_come_from_their_own_weights(run, labeled):
    """Each row is what a probe gives on the features of its own trunk: the trained one for
    ``pretext``, fresh ones of the stated seeds for ``random_seeds`` (swapping them fails here)."""
    import dataclasses

    from pretextgen.training.checkpoint import load_run
    from pretextgen.training.recipe import build_recipe

    out = ev.evaluate(run, labeled, progress=False)
    classes, train_items, test_items, _ = ev.labeled_split(labeled)
    task, params, config, trained = load_run(run)

    def row(recipe, stage="block1"):
        tr, ty, _ = ev.features(recipe, [], train_items, 32, "cpu", 64)
        te, tey, _ = ev.features(recipe, [], test_items, 32, "cpu", 64)
        probe = ev.linear_probe(tr["pretext"][stage], ty, te["pretext"][stage], tey, len(classes))
        return round(probe["accuracy"], ev.DECIMALS)

    assert out["pretext"]["block1"]["linear"] == row(trained)
    first = out["random_seeds"][0]
    fresh = build_recipe(task, params, dataclasses.replace(config, seed=first["seed"]))
    assert first["stages"]["block1"]["linear"] == row(fresh)
    conv = next(k for k, v in trained.state_dict().items() if k.startswith("trunk") and v.ndim == 4)
    assert not torch.equal(trained.state_dict()[conv], fresh.state_dict()[conv])


def test_nothing_of_test_reaches_the_probes_fit(photos):
    """Test images appended to the test set change nothing of what the probe predicts for the
    others: standardisation and the strength's choice read train alone."""
    train_x, train_y, test_x, test_y = _pixel_set(photos, ("astronaut.png", "chelsea.png", "coffee.png"), 20, 10, 0)
    alone = ev.linear_probe(train_x, train_y, test_x, test_y, 3)
    junk = torch.randn(40, test_x.shape[1]) * 100 + 50
    more = ev.linear_probe(train_x, train_y, torch.cat([test_x, junk]), torch.cat([test_y, torch.zeros(40, dtype=torch.int64)]), 3)
    assert more["l2"] == alone["l2"] and torch.equal(more["correct"][:len(test_y)], alone["correct"])


def test_eval_size_overrides_the_recipes_for_every_row(run, labeled, capsys):
    """``--size N``: the labeled images reach every trunk (and the pixels) at N px, and the report
    says so; a size the trunk cannot take is one line."""
    out = ev.evaluate(run, labeled, progress=False, size=48)
    assert (out["eval_size"], out["recipe_eval_size"]) == (48, 32)
    assert "input: rgb at 48 px" in " ".join(ev.report(out))
    code = main(["eval", "--checkpoint", str(run), "--data", str(labeled), "--size", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--size 1" in err and "its own size is 32" in err


# ---------------------------------------------------------------- (f) protocols for patch trunks
@pytest.fixture(scope="module")
def jigsaw_run(tmp_path_factory):
    """A jigsaw trunk trained for one short epoch on 27 px crops cut into 3x3 tiles of 8 px."""
    import pretextgen

    root = tmp_path_factory.mktemp("jig")
    pretextgen.build(task="jigsaw", out=root / "build", samples=16, backend="opencv", progress=False,
                     overrides={"crop": 27, "tile": 8, "permutations": 10})
    pretextgen.train(data=root / "build", out=root / "run", epochs=1, batch_size=8, progress=False, device="cpu",
                     overrides=["num_workers=0"], as_built=True)
    return root / "run"


def test_patch_trunks_are_probed_at_their_training_scale_by_either_protocol(jigsaw_run, labeled, capsys):
    whole = ev.evaluate(jigsaw_run, labeled, progress=False)
    assert whole["protocol"] == {"name": "whole", "size": 27} and whole["eval_size"] == 27  # the crop, not the tile
    text = " ".join(ev.report(whole))
    assert "protocol: whole: whole images at 27 px (also: --protocol grid)" in text
    grid = ev.evaluate(jigsaw_run, labeled, progress=False, protocol="grid")
    assert grid["protocol"] == {"name": "grid", "size": 27, "cells": 3, "patch": 8, "step": 9, "origin": 0}
    assert "cut into 3x3 patches of 8 px" in " ".join(ev.report(grid))
    # The random trunks and the pixels are probed by the same protocol: their rows change with it.
    assert grid["random"] != whole["random"] and grid["pixels"] != whole["pixels"]
    code = main(["eval", "--checkpoint", str(jigsaw_run), "--data", str(labeled), "--protocol", "tiles", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "offers whole, grid" in err
    code = main(["eval", "--checkpoint", str(jigsaw_run), "--data", str(labeled), "--protocol", "grid", "--size", "40",
                 "--no-progress"])
    assert code == 2 and "--protocol whole" in capsys.readouterr().err


def test_a_grid_protocol_averages_the_trunks_features_over_its_patches(jigsaw_run, labeled):
    from pretextgen.training.checkpoint import load_run

    _, _, _, recipe = load_run(jigsaw_run)
    spec = recipe.eval_protocols()["grid"]
    items = ev.labeled_split(labeled)[1][:4]
    images = torch.from_numpy(np.stack([ev.load_square(p, 27) for p, _ in items]).transpose(0, 3, 1, 2).copy())
    patches = ev.views(images, spec)
    assert len(patches) == 9 and torch.equal(patches[5], images[:, :, 9:17, 18:26])  # row 1, column 2
    feats, _, _ = ev.features(recipe, [], items, spec, "cpu", batch_size=4)
    by_hand = torch.stack([ev.extract(recipe, recipe.eval_input(p))["block1"] for p in patches]).mean(0)
    assert torch.allclose(feats["pretext"]["block1"], by_hand, atol=1e-6)


def test_context_is_probed_at_the_scale_of_its_layout():
    from pretextgen.config import load_params
    from pretextgen.training.recipe import build_recipe, resolve_config

    task = get_task("context")
    params = load_params(task, overrides={"patch": 16, "gap": 4, "layout_scale": [0.6, 1.0], "chroma": "none"})
    protocols = build_recipe(task, params, resolve_config(task, "cpu")).eval_protocols()
    assert protocols["whole"] == {"size": 70}  # the 56 px layout spans 0.8 of the shorter side
    assert protocols["grid"] == {"size": 70, "cells": 3, "patch": 16, "step": 20, "origin": 7}
    dropped = load_params(task, overrides={"patch": 16, "gap": 4, "layout_scale": [0.6, 1.0], "chroma": "drop"})
    protocols = build_recipe(task, dropped, resolve_config(task, "cpu")).eval_protocols()
    assert protocols["whole"] == {"size": 70, "channels": "each"} and protocols["grid"]["channels"] == "each"


def test_each_channel_alone_is_what_a_trunk_that_kept_one_channel_sees(photos):
    """chroma="drop" kept one channel per patch and set the others near its mean: ``views`` shows
    every image three times so, each channel kept in turn, the others at its rounded mean."""
    root, _ = photos
    images = torch.from_numpy(np.stack([ev.load_square(str(root / n), 24) for n in ("astronaut.png", "coffee.png")])
                              .transpose(0, 3, 1, 2).copy())
    shown = ev.views(images, {"size": 24, "channels": "each"})
    assert len(shown) == 3
    for c, view in enumerate(shown):
        assert torch.equal(view[:, c], images[:, c])
        for other in {0, 1, 2} - {c}:
            mean = images[:, c].float().mean(dim=(1, 2)).round()
            assert torch.equal(view[:, other].float(), mean[:, None, None].expand(-1, 24, 24))
    assert len(ev.views(images, {"size": 24, "cells": 3, "patch": 8, "step": 8, "origin": 0, "channels": "each"})) == 27


def test_held_out_accuracy_tells_a_memorised_build_from_new_samples(tmp_path):
    """A jigsaw run trained until it has learned its 32 fixed samples by heart scores high on them
    and near chance on a build of other samples: what ``held_out_accuracy`` is for."""
    import pretextgen

    over = {"crop": 27, "tile": 8, "permutations": 10}
    pretextgen.build(task="jigsaw", out=tmp_path / "build", samples=32, backend="opencv", progress=False, overrides=over)
    pretextgen.build(task="jigsaw", out=tmp_path / "other", samples=200, seed=1, backend="opencv", progress=False,
                     overrides=over)
    pretextgen.train(data=tmp_path / "build", out=tmp_path / "run", epochs=60, batch_size=8, progress=False,
                     device="cpu", overrides=["num_workers=0", "lr=0.02"], as_built=True)
    own = ev.held_out_accuracy(tmp_path / "run", tmp_path / "build")
    other = ev.held_out_accuracy(tmp_path / "run", tmp_path / "other")
    assert own >= 0.9 and other <= 0.35, (own, other)
