"""Parameters that size work have upper bounds checked at load time; parameters that depend on each
other fail with one line naming both and values that fit (issue 12, item 3)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pretextgen.cli import main
from pretextgen.config import load_params, limits_of
from pretextgen.errors import ConfigError
from pretextgen.permutations import MAX_PERMUTATIONS, hamming_stats
from pretextgen.registry import get_task, list_tasks

LIMITED = [(name, field) for name in list_tasks() for field in limits_of(get_task(name))]


def _error(task: str, overrides: dict) -> str:
    with pytest.raises(ConfigError) as e:
        load_params(get_task(task), overrides=overrides)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_every_task_states_limits():
    assert all(limits_of(get_task(name)) for name in list_tasks())
    assert limits_of(get_task("jigsaw"))["permutations"] == MAX_PERMUTATIONS


@pytest.mark.parametrize("task,field", LIMITED)
def test_over_the_limit_is_a_config_error_naming_task_field_and_bound(task, field):
    bound = limits_of(get_task(task))[field]
    over = bound * 2 if isinstance(bound, float) else bound + 1
    msg = _error(task, {field: over})
    assert msg.startswith(f"{task}.{field}: {over} is above the limit of {bound} (")
    assert msg.endswith(f"lower {field} to <= {bound}")


@pytest.mark.parametrize("task,field", LIMITED)
def test_defaults_are_within_the_limits(task, field):
    t = get_task(task)
    assert getattr(load_params(t), field) <= limits_of(t)[field]


# (task, bad overrides, substrings of the error, overrides the error suggests, which must load)
DEPENDENT = [
    ("jigsaw", {"grid": 4}, ["jigsaw.tile: 64", "255 // 4 = 63 px", "lower tile to <= 63", "raise crop to >= 256"],
     [{"grid": 4, "tile": 63}, {"grid": 4, "crop": 256}]),
    ("jigsaw", {"crop": 5}, ["jigsaw.tile: 64", "5 // 3 = 1 px", "raise crop to >= 192"], [{"crop": 192}]),
    ("jigsaw", {"grid": 2}, ["jigsaw.permutations: 100", "24 permutations of a 2x2 grid", "<= 24", "grid to >= 3"],
     [{"grid": 2, "permutations": 24, "tile": 64}]),
    ("context", {"min_pixels": 10000}, ["context.min_pixels: 10000", "<= 9216", "patch to >= 100"],
     [{"min_pixels": 10000, "patch": 100}]),
    ("mae", {"size": 200}, ["mae.patch: 16 does not divide size 200", "(8, 10, 20, 25)", "(192 or 208)"],
     [{"size": 200, "patch": 20}, {"size": 208}]),
    ("mae", {"size": 1024, "patch": 4}, ["mae.patch:", "256 patches a side", "patch to >= 8", "size to <= 512"],
     [{"size": 1024, "patch": 8}, {"size": 512, "patch": 4}]),
    ("mae", {"mask_ratio": 0.999}, ["mae.mask_ratio: 0.999", "<= 0.9948"], [{"mask_ratio": 0.9948}]),
    ("inpainting", {"overlap": 40}, ["inpainting.overlap: 40", "<= 31", "size to >= 164"],
     [{"overlap": 31}, {"overlap": 40, "size": 164}]),
    ("inpainting", {"mask": "blocks", "block_side": [0.6, 0.9]}, ["inpainting.block_side:", "coverage max 0.3",
     "min to <= 0.5468", "coverage max to >= 0.3619"],
     [{"mask": "blocks", "block_side": [0.5468, 0.9]}, {"mask": "blocks", "block_side": [0.6, 0.9], "coverage": [0.2, 0.3619]}]),
    ("inpainting", {"mask": "blocks", "block_side": [0.001, 0.001]}, ["inpainting.block_side:", "coverage min 0.2"],
     [{"mask": "blocks", "block_side": [0.001, 0.015]}]),
    ("inpainting", {"mask": "regions", "size": 1024, "region_res": 0.5}, ["inpainting.region_res:", "512 pattern cells",
     "region_res to <= 0.125", "size to <= 256"],
     [{"mask": "regions", "size": 1024, "region_res": 0.125}, {"mask": "regions", "size": 256, "region_res": 0.5}]),
    ("colorization", {"size": 1024, "target_stride": 1}, ["colorization.target_stride:", "1024 x 1024 targets",
     "target_stride to >= 4", "size to <= 256"], [{"size": 1024, "target_stride": 4}, {"size": 256, "target_stride": 1}]),
    ("splitbrain", {"target_stride": 300}, ["splitbrain.target_stride: 300", "size to >= 300"],
     [{"target_stride": 300, "size": 300}]),
    ("contrastive", {"size": 16}, ["contrastive.blur_kernel: 23", "16 px", "blur_kernel to <= 15", "size to >= 23"],
     [{"size": 16, "blur_kernel": 15}, {"size": 23}]),
    ("exemplar", {"transforms": 512, "patch": 128}, ["exemplar.transforms: 512", "transforms to <= 256",
     "patch to <= 90"], [{"transforms": 256, "patch": 128}, {"transforms": 512, "patch": 90}]),
    ("frame_order", {"motion_step": 30}, ["frame_order.motion_step: 30", "span 30", "<= 29", "span to >= 31"],
     [{"motion_step": 29}, {"motion_step": 30, "span": 31}]),
    ("track", {"motion_step": 40}, ["track.motion_step: 40", "track_len 30", "<= 30", "track_len to >= 40"],
     [{"motion_step": 40, "track_len": 40}]),
    ("video_colorization", {"clusters": 256, "kmeans_points": 200_000}, ["video_colorization.kmeans_points: 200000",
     "256 clusters", "kmeans_points to <= 32768", "clusters to <= 41"],
     [{"clusters": 256, "kmeans_points": 32768}, {"clusters": 41, "kmeans_points": 200_000}]),
    ("video_colorization", {"label_size": 200}, ["video_colorization.label_size: 200", "size 128", "size to >= 200"],
     [{"label_size": 200, "size": 200}]),
]


@pytest.mark.parametrize("task,bad,says,fixes", DEPENDENT, ids=[f"{c[0]}-{'-'.join(c[1])}" for c in DEPENDENT])
def test_dependent_parameters_name_both_and_a_fix_that_loads(task, bad, says, fixes):
    msg = _error(task, bad)
    for s in says:
        assert s in msg, (s, msg)
    for fix in fixes:
        load_params(get_task(task), overrides=fix)


def test_colorization_neighbours_fit_the_bins_of_grid_step():
    msg = _error("colorization", {"neighbours": 20, "grid_step": 64})
    assert "colorization.neighbours: 20 is more than the 10 ab bins of grid_step 64" in msg
    load_params(get_task("colorization"), overrides={"neighbours": 10, "grid_step": 64})


def test_jigsaw_needs_two_permutations():
    assert "jigsaw.permutations:" in _error("jigsaw", {"permutations": 1})


def _hamming_direct(perms):
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    off = d[~np.eye(len(perms), dtype=bool)]
    return {"min_hamming": int(off.min()), "mean_hamming": round(float(off.mean()), 4), "max_hamming": int(off.max())}


@pytest.mark.parametrize("count,cells", [(2, 4), (3, 9), (100, 9), (600, 9), (300, 16), (50, 36)])
def test_hamming_stats_in_blocks_equals_the_direct_formula(count, cells):
    rng = np.random.default_rng([count, cells])
    perms = np.argsort(rng.random((count, cells)), axis=1)
    perms[-1] = perms[0]  # a duplicate: min 0
    for block in (1, 7, 256, 10_000):
        assert hamming_stats(perms, block=block) == _hamming_direct(perms)


def test_hamming_stats_of_thousands_in_bounded_memory():
    perms = np.argsort(np.random.default_rng(0).random((4000, 9)), axis=1)
    tracemalloc.start()
    try:
        stats = hamming_stats(perms)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30 * 2**20, peak  # the direct formula: 4000^2 x 9 bools + 4000^2 int64 = 272 MB
    assert stats["max_hamming"] == 9 and 0 <= stats["min_hamming"] <= 9 and 8 < stats["mean_hamming"] < 9


def test_jigsaw_prepare_writes_no_file_when_the_stats_fail(tmp_path, monkeypatch):
    from pretextgen.tasks import jigsaw

    def fail(perms):
        raise MemoryError

    monkeypatch.setattr(jigsaw, "hamming_stats", fail)
    with pytest.raises(MemoryError):
        jigsaw.prepare(load_params(get_task("jigsaw"), overrides={"permutations": 10}), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_over_the_limit_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "x"
    rc = main(["build", "--task", "jigsaw", "--out", str(out), "--set", "permutations=10000000"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pretextgen: error: jigsaw.permutations: 10000000 is above the limit")
    assert not out.exists()
