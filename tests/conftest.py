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
