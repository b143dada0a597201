"""Shared test fixtures: real photos (scikit-image's, and ../shared/data when present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pretextgen.backends import gpu_count
from pretextgen.sources import default_source

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # Keep the scan cache of the tests away from the user's ~/.cache (subprocesses inherit it).
    import os
    import tempfile

    os.environ["PRETEXTGEN_CACHE"] = tempfile.mkdtemp(prefix="pretextgen-test-cache-")


@pytest.fixture(scope="session")
def photos() -> tuple[Path, list[str]]:
    """(root, relative paths) of scikit-image's bundled photographs."""
    return default_source()


@pytest.fixture(scope="session")
def sources(photos):
    """(root, scanned Sources) of scikit-image's photos: all usable for min_side 64."""
    from pretextgen.sources import scan

    root, files = photos
    good, skipped = scan(root, files, min_side=64)
    assert not skipped
    return root, good


@pytest.fixture(scope="session")
def shared_images() -> Path:
    root = SHARED_DATA / "images"
    if not root.is_dir():
        pytest.skip(f"{root} not present (only CI and developer machines have ../shared/data)")
    return root


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    root = SHARED_DATA / "videos"
    if not root.is_dir():
        pytest.skip(f"{root} not present (only CI and developer machines have ../shared/data)")
    return root


def _gpu() -> bool:
    return gpu_count() > 0


requires_gpu = pytest.mark.skipif(not _gpu(), reason="no CUDA GPU visible to DALI")


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def dali_difference(task_name: str, root, good, device: str, n: int, batch_size: int) -> float:
    """The worst mean absolute difference (grey levels), over the fields of samples 0..n-1, between
    the DALI backend on ``device`` and the OpenCV backend (as a build runs it) on the same plans;
    every field must have its declared shape and the same dtype on both."""
    from pretextgen.backends import DaliBackend, OpenCVBackend
    from pretextgen.builder import plan_sample
    from pretextgen.config import load_params
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
