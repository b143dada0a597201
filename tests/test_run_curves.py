"""A training run's curves (pretextgen.training.curves) and ``pretextgen inspect RUN_DIR``
(pretextgen.inspect.run), on a real run: rotation from live samples of scikit-image's photos, 64 samples
of 32 px, batch 2, two epochs (64 steps: one ``steps`` row at step 50 and two ``epoch`` rows).

RunRecorder gets the run's metrics.csv rows one by one as the trainer writes them, in a folder of its
own (so these tests hold whether or not the trainer already records curves itself): curves.png must be
a PNG of the layout's size whose four plots show the line and the dots; rows the trainer can write
(one row, no accuracy, constant values, none) must draw too. TensorBoard's event files are read back
with TensorBoard's own reader, a resumed run's included."""
from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import labeled_folder
from pretextgen.cli import main
from pretextgen.drawing import CAPTION_PAPER, INK
from pretextgen.training import curves
from pretextgen.training.curves import RunRecorder, draw_curves, read_metrics, write_curves
from pretextgen.training.trainer import METRICS_COLUMNS, train

CLI = [sys.executable, "-m", "pretextgen.cli"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread (two shared cores: two threads wait on each other, see test_train.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "rot"
    train(task="rotation", source=None, samples=64, out=out, epochs=2, progress=False,
          overrides=["sample.size=32", "batch_size=2", "num_workers=0", "threads=1"])
    kinds = [r["kind"] for r in read_metrics(out / "metrics.csv")]
    assert kinds == ["epoch", "steps", "epoch"], kinds  # what the tests below draw
    return out


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, photos) -> Path:
    """LABELED_DIR for ``pretextgen eval``: square crops of two photos, one class each."""
    return labeled_folder(tmp_path_factory.mktemp("labeled"), photos[0])


def write_metrics(path: Path, rows: list[dict], mode: str = "w") -> None:
    """Rows to metrics.csv as the trainer writes them (its columns, a header when the file is new)."""
    new = mode == "w" or not path.exists()
    with open(path, "w" if new else mode, newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        if new:
            w.writeheader()
        w.writerows(rows)


def replay(run: Path, out: Path, rows=None, resume: bool = False) -> RunRecorder:
    """Feed ``rows`` (default: the run's metrics.csv) to a RunRecorder in ``out`` the way the trainer
    does: append each row to out/metrics.csv, ``row`` it, ``epoch_end`` after an epoch row; closed."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "config.json", out / "config.json")
    recorder = RunRecorder(out, resume=resume)
    try:
        for r in read_metrics(run / "metrics.csv") if rows is None else rows:
            write_metrics(out / "metrics.csv", [r], "a")
            recorder.row(r)
            if r["kind"] == "epoch":
                recorder.epoch_end()
    finally:
        recorder.close()
    return recorder


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def plots(image: np.ndarray) -> dict[str, np.ndarray]:
    """The inside of each panel's plot frame, by metrics column, found below the panels' title strips
    (CAPTION_PAPER at the right end of the left column, where no title text reaches)."""
    caption = np.all(image[:, curves.PANEL_WIDTH - 3] == CAPTION_PAPER, axis=1)
    ends = [y + 1 for y in range(len(caption) - 1) if caption[y] and not caption[y + 1]]
    assert len(ends) == 2, f"expected two rows of panels, found title strips ending at {ends}"
    found = {}
    for k, (column, *_) in enumerate(curves.PANELS):
        top = ends[k // curves.COLUMNS] + curves.MARGIN_TOP
        left = (k % curves.COLUMNS) * (curves.PANEL_WIDTH + curves.GAP) + curves.MARGIN_LEFT
        found[column] = image[top + 1:top + curves.PLOT_HEIGHT,
                              left + 1:left + curves.PANEL_WIDTH - curves.MARGIN_LEFT - curves.MARGIN_RIGHT]
    return found


def pixels_near(area: np.ndarray, colour, tolerance: int = 40) -> int:
    return int(np.sum(np.abs(area.astype(int) - np.array(colour)).sum(-1) < tolerance))


def expected_width() -> int:
    return curves.COLUMNS * curves.PANEL_WIDTH + (curves.COLUMNS - 1) * curves.GAP


# ---------------------------------------------------------------- curves.png
def test_recorder_draws_the_runs_curves_at_each_epoch_end(run, tmp_path):
    out = tmp_path / "replayed"
    out.mkdir()
    shutil.copy(run / "config.json", out / "config.json")
    recorder = RunRecorder(out, resume=False)
    pictures = []
    for r in read_metrics(run / "metrics.csv"):
        write_metrics(out / "metrics.csv", [r], "a")
        recorder.row(r)
        if r["kind"] == "epoch":
            recorder.epoch_end()
            pictures.append((out / "curves.png").read_bytes())
    recorder.close()
    assert len(pictures) == 2 and pictures[0] != pictures[1], "curves.png is redrawn at each epoch's end"
    assert not list(out.glob(".*tmp")), "the temporary file is renamed, not left behind"

    image = read_png(out / "curves.png")
    rows = read_metrics(out / "metrics.csv")
    assert image.shape == draw_curves(rows, "rotation (replayed)").shape
    assert image.shape[1] == expected_width() and 400 < image.shape[0] < 700
    for column, area in plots(image).items():
        assert pixels_near(area, curves.DOT_COLOUR) > 20, f"{column}: no epoch dots"
        assert pixels_near(area, curves.LINE_COLOUR) > 3, f"{column}: no steps mark"


@pytest.mark.parametrize("case", ["one row", "no accuracy", "constant", "header only"])
def test_curves_draw_any_metrics_the_trainer_can_write(run, tmp_path, case):
    rows = read_metrics(run / "metrics.csv")
    if case == "one row":
        rows = rows[:1]
    elif case == "no accuracy":  # reconstruction tasks (colorization, mae...) leave it empty
        rows = [{**r, "accuracy": ""} for r in rows]
    elif case == "constant":  # zero range on every axis but step
        rows = [{**r, "loss": "0.5", "accuracy": "0.25", "lr": "0", "data_wait": "0.000"} for r in rows]
    else:
        rows = []
    write_metrics(tmp_path / "metrics.csv", rows)
    image = read_png(write_curves(tmp_path))
    assert image.shape[1] == expected_width()
    areas = plots(image)
    for column, area in areas.items():
        dots = pixels_near(area, curves.DOT_COLOUR)
        if case == "header only" or (case == "no accuracy" and column == "accuracy"):
            assert dots == 0, f"{column}: dots where nothing was recorded ({case})"
            assert pixels_near(area, INK, 60) > 20, f"{column}: expected a note instead of a plot ({case})"
        else:
            assert dots > 10, f"{column}: no epoch dot ({case})"


def test_a_picture_never_stops_a_run(tmp_path, caplog):
    """A folder that cannot be written: RunRecorder logs a warning and the run goes on."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the run folder should be")
    recorder = RunRecorder(blocked, resume=False)
    with caplog.at_level(logging.WARNING, logger="pretextgen.training"):
        recorder.epoch_end()
        recorder.close()
    assert any("curves.png not drawn" in r.getMessage() for r in caplog.records), caplog.text


# ---------------------------------------------------------------- pretextgen inspect RUN_DIR
def test_inspect_summarises_a_run_through_the_cli(run, labeled, tmp_path):
    import pretextgen

    pretextgen.evaluate(run, labeled, json_path=run / "eval.json", progress=False)
    (run / "curves.png").unlink(missing_ok=True)  # inspect draws a missing picture

    def inspect() -> list[str]:
        log_file = tmp_path / "inspect.txt"
        with open(log_file, "w") as f:  # a file: neither a pipe nor a terminal
            code = subprocess.run(CLI + ["inspect", str(run)], stdout=f, stderr=subprocess.STDOUT,
                                  timeout=120).returncode
        text = log_file.read_text()
        assert code == 0, text
        return text.splitlines()

    lines = inspect()
    last = read_metrics(run / "metrics.csv")[-1]
    best = json.loads((run / "eval.json").read_text())["best"]
    assert lines[0] == f"run: {run}"
    assert lines[1].startswith("task: rotation (preset cpu, trunk small, batch size 2")
    assert lines[2] == "data: live:skimage:data (64 samples per epoch)"
    assert lines[3] == "epochs: 2/2 done, 64 steps"
    assert lines[4] == (f"last epoch: loss {float(last['loss']):.4f}, pretext accuracy {float(last['accuracy']):.1%}, "
                        f"{float(last['samples_per_s']):,.0f} samples/s, data wait {float(last['data_wait']):.1%}")
    assert lines[5].startswith(f"eval: best pretext stage {best['stage']} {best['linear']:.1%} linear; "
                               f"random trunk's best {best['random_best_stage']}")
    lo, hi = best["gain_ci_points"]
    assert f"gain {best['gain_points']:+.1f} points [{lo:+.1f}, {hi:+.1f}] (95% interval)" in lines[5]
    assert lines[6] == f"curves: {run / 'curves.png'} (drawn now from metrics.csv)"
    assert read_png(run / "curves.png").shape[1] == expected_width()
    assert inspect()[6] == f"curves: {run / 'curves.png'}"


def test_inspect_a_stopped_run_without_accuracy_or_eval(run, tmp_path, capsys):
    out = tmp_path / "stopped"
    out.mkdir()
    shutil.copy(run / "config.json", out / "config.json")
    first = [{**r, "accuracy": ""} for r in read_metrics(run / "metrics.csv")[:1]]
    write_metrics(out / "metrics.csv", first)
    assert main(["inspect", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == ("epochs: 1/2 done, 32 steps (1 to go; a stopped run continues with its train command "
                        "plus --resume)")
    assert "pretext accuracy not recorded" in lines[4]
    assert lines[5].startswith(f"eval: none in this folder (pretextgen eval --checkpoint {out}")
    assert (out / "curves.png").is_file()


def test_inspect_build_options_on_a_run_are_one_error_line(run, tmp_path, capsys):
    assert main(["inspect", str(run), "--sheet", str(tmp_path / "s.png"), "--audit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pretextgen: error: {run} is a training run, not a build; --sheet, --audit: for builds only "
                   "(config.json's \"data\" names the build it trained on)"]
    assert not (tmp_path / "s.png").exists()
    (tmp_path / "config.json").write_text("{}")  # config.json alone: neither a run nor a build
    assert main(["inspect", str(tmp_path)]) == 2
    assert "holds no manifest.json: not a pretextgen build" in capsys.readouterr().err


# ---------------------------------------------------------------- TensorBoard
def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_every_row_and_a_resume_replaces_the_interrupted_part(run, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        pytest.skip("tensorboard not installed: pip install 'pretextgen[tensorboard]'")
    rows = read_metrics(run / "metrics.csv")
    out = tmp_path / "tb"
    replay(run, out)
    scalars = _scalars(out / "tensorboard")
    # every column the rows fill (this run's recipe reports no alignment or uniformity)
    recorded = [name for name in curves.SCALARS if all(r.get(name) for r in rows)]
    assert {"loss", "accuracy", "lr"} <= set(recorded) and "alignment" not in recorded
    assert set(scalars) == {f"{kind}/{name}" for kind in ("steps", "epoch") for name in recorded}
    for kind in ("steps", "epoch"):
        mine = [r for r in rows if r["kind"] == kind]
        for name in recorded:
            assert [s for s, _ in scalars[f"{kind}/{name}"]] == [int(r["step"]) for r in mine]
            assert np.allclose([v for _, v in scalars[f"{kind}/{name}"]], [float(r[name]) for r in mine], rtol=1e-6)

    # An interrupted run wrote epoch 2's rows with other values; its resume writes them again.
    resumed = tmp_path / "resumed"
    replay(run, resumed, rows[:1] + [{**r, "loss": f"{float(r['loss']) + 100:.6f}"} for r in rows[1:]])
    write_metrics(resumed / "metrics.csv", rows[:1])  # the trainer's trim on resume
    replay(run, resumed, rows[1:], resume=True)
    scalars = _scalars(resumed / "tensorboard")
    for kind in ("steps", "epoch"):
        want = [(int(r["step"]), pytest.approx(float(r["loss"]))) for r in rows if r["kind"] == kind]
        assert scalars[f"{kind}/loss"] == want, f"{kind}/loss: the interrupted part shows"
