"""cpc: every patch proven against its own source box on real photos, the layout's geometry, and a
recipe whose context cannot see the rows it predicts. (What every task must do: test_contracts.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pretextgen.backends import reference_sample
from pretextgen.config import load_params
from pretextgen.geometry import crop_resize, to_gray3
from pretextgen.plan import plan_sample
from pretextgen.registry import get_task
from pretextgen.sources import load_rgb
from pretextgen.tasks.cpc import flipped_order


def _items(p, good, n, seed=0):
    return [plan_sample(get_task("cpc"), p, good, seed, i) for i in range(n)]


@pytest.mark.parametrize("overrides", [{}, {"grid": 4, "patch": 32, "stride": 24, "jitter": 6},
                                       {"grid": 7, "patch": 8, "stride": 4, "jitter": 1}])
def test_each_patch_is_its_own_source_box_resampled_at_its_grid_place(sources, overrides):
    root, good = sources
    t = get_task("cpc")
    p = load_params(t, overrides={**overrides, "flip_prob": 0.5})
    flips = set()
    for it in _items(p, good, 8):
        img = load_rgb(root, it.source)
        patches = reference_sample(t, p, img, it.plan)["patches"]
        plan = it.plan
        flips.add(plan["flip"])
        x0, y0, x1, y1 = plan["crop_box"]
        s = (x1 - x0) / p.frame
        assert x1 - x0 == y1 - y0
        sides = {b[2] - b[0] for b in plan["boxes"]} | {b[3] - b[1] for b in plan["boxes"]}
        assert sides == {max(1, round((p.patch - p.jitter) * s))}  # one side: one resampling phase
        order = flipped_order(p.grid) if plan["flip"] else np.arange(p.grid ** 2)
        for k, box in enumerate(plan["boxes"]):
            assert all(isinstance(v, int) for v in box) and x0 <= box[0] and box[2] <= x1 and y0 <= box[1] and box[3] <= y1
            r, c = divmod(int(order[k]), p.grid)  # stored patch k sits at source cell (r, c)
            dx, dy = plan["offsets"][order[k]]
            assert 0 <= dx <= p.jitter and 0 <= dy <= p.jitter
            # its box starts where its cell does, plus the jitter (rounding apart)
            assert abs(box[0] - (x0 + (c * p.stride + dx) * s)) <= 1 and abs(box[1] - (y0 + (r * p.stride + dy) * s)) <= 1
            want = crop_resize(img, box, (p.patch, p.patch))
            np.testing.assert_array_equal(patches[k], want[:, ::-1] if plan["flip"] else want)
    assert flips == {True, False}


def test_neighbouring_patches_overlap_by_patch_minus_stride(sources):
    """On a real photo cut to the layout's own size (no resampling), the overlaps are equal pixels."""
    from pretextgen.tasks.cpc import plan

    root, good = sources
    t = get_task("cpc")
    p = load_params(t, overrides={"grid": 3, "patch": 32, "stride": 16, "jitter": 0, "crop_scale": [1.0, 1.0],
                                  "flip_prob": 0.0})
    img = np.ascontiguousarray(load_rgb(root, good[0])[:p.frame, :p.frame])
    the_plan = plan(p, np.random.default_rng(0), p.frame, p.frame)
    patches = reference_sample(t, p, img, the_plan)["patches"]
    np.testing.assert_array_equal(patches[0][:, 16:], patches[1][:, :16])  # right half = left half of the next
    np.testing.assert_array_equal(patches[0][16:], patches[3][:16])  # bottom half = top half of the row below
    np.testing.assert_array_equal(patches[8], img[32:, 32:])


def test_per_patch_gray_and_jitter_are_drawn_and_applied(sources):
    root, good = sources
    t = get_task("cpc")
    p = load_params(t, overrides={"grid": 3, "patch": 16, "stride": 8, "gray_prob": 0.5, "color_jitter": 0.2,
                                  "flip_prob": 0.0})
    grays = []
    for it in _items(p, good, 6):
        img = load_rgb(root, it.source)
        patches = reference_sample(t, p, img, it.plan)["patches"]
        j = np.asarray(it.plan["jitter"], np.float32)
        for k, box in enumerate(it.plan["boxes"]):
            raw = crop_resize(img, box, (16, 16))
            if it.plan["gray"][k]:
                raw = to_gray3(raw)
            want = np.clip(np.rint(raw * j[k, :, 0] + j[k, :, 1]), 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(patches[k], want)
        grays += it.plan["gray"]
    assert 0 < sum(grays) < len(grays)


def test_params_refuse_layouts_that_cannot_be_predicted():
    from pretextgen.errors import PretextgenError

    t = get_task("cpc")
    for bad, said in [({"grid": 1}, "grid"), ({"stride": 80}, "stride"), ({"jitter": 64}, "jitter"),
                      ({"patch": 4}, "patch")]:
        with pytest.raises((ValueError, PretextgenError), match=said):
            load_params(t, overrides=bad)


# ---------------------------------------------------------------- the recipe
def _recipe(**extra):
    from pretextgen.training.recipe import build_recipe, resolve_config

    t = get_task("cpc")
    p = load_params(t, overrides=t.trainer.samples["cpu"])
    cfg = resolve_config(t, "cpu", {"extra": extra} if extra else None)
    return p, build_recipe(t, p, cfg)


def test_the_context_at_a_row_never_sees_the_rows_below():
    _, recipe = _recipe()
    z = torch.randn(2, recipe.trunk.out_channels, 7, 7, requires_grad=True)
    ctx = recipe.context[0](z)
    ctx[:, :, 3].sum().backward()
    seen = z.grad.abs().sum(dim=(0, 1, 3))  # per input row
    assert seen[:4].sum() > 0 and torch.all(seen[4:] == 0)


def test_predictions_skip_the_overlapping_row_and_the_loss_trains():
    p, recipe = _recipe()
    assert recipe.skip == 1 and p.stride < p.patch
    g = torch.Generator().manual_seed(0)
    batch = {"patches": torch.randint(0, 256, (4, p.grid ** 2, 3, p.patch, p.patch), dtype=torch.uint8, generator=g)}
    loss, metrics = recipe.loss(batch)
    assert torch.isfinite(loss) and 0 <= float(metrics["accuracy"]) <= 1
    # a uniform guess over the candidates (4 images x 49 patches) scores log(196) at the start
    assert abs(loss.item() - np.log(4 * 49)) < 1.5
    loss.backward()
    assert all(q.grad is not None for q in recipe.trunk.parameters())


def test_four_directions_and_norms():
    p, recipe = _recipe(directions=4)
    assert len(recipe.context) == 4
    batch = {"patches": torch.randint(0, 256, (2, p.grid ** 2, 3, p.patch, p.patch), dtype=torch.uint8)}
    assert torch.isfinite(recipe.loss(batch)[0])
    # layer norm by default: no statistic is shared between the patches of a batch
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in recipe.trunk.modules())
    _, batch_norm = _recipe(norm="batch")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in batch_norm.trunk.modules())


def test_eval_reads_an_image_as_the_training_grid_at_its_scale():
    p, recipe = _recipe()
    protocols = recipe.eval_protocols()
    assert list(protocols) == ["grid", "whole"]
    grid = protocols["grid"]
    assert (grid["cells"], grid["patch"], grid["step"]) == (p.grid, p.patch, p.stride)
    assert grid["size"] == round(p.frame / 0.9) and grid["origin"] + p.frame <= grid["size"]
