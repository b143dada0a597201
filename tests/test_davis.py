"""The DAVIS evaluation's parts: J and F against hand-made masks and DAVIS's own code, propagation
and the flow chain on a synthetic video of a moving square, and the layout reader on the real
DAVIS-2016 sequences of ../shared/data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pretextgen.training import davis

from helpers import SHARED_DATA, moving_square_video, square


def test_jaccard_on_masks_of_known_overlap():
    a = square(20, (10, 10), 64)
    assert davis.jaccard(a, a) == 1.0
    assert davis.jaccard(a, square(20, (10, 20), 64)) == pytest.approx(200 / 600)
    assert davis.jaccard(a, square(20, (40, 40), 64)) == 0.0
    empty = np.zeros((64, 64), bool)
    assert davis.jaccard(empty, empty) == 1.0 and davis.jaccard(a, empty) == 0.0


def davis_boundary_reference(pred, gt, bound_th=0.008):
    """DAVIS's db_eval_boundary, transcribed with scikit-image's disk and dilation as theirs."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    fg, gtb = davis.seg2bmap(pred), davis.seg2bmap(gt)
    fg_dil, gt_dil = (binary_dilation(b, structure=disk(int(bound_pix))) for b in (fg, gtb))
    n_fg, n_gt = fg.sum(), gtb.sum()
    if n_fg == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p, r = (fg & gt_dil).sum() / n_fg, (gtb & fg_dil).sum() / n_gt
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("shift", [0, 1, 2, 3, 6, 30])
def test_boundary_f_matches_davis_code(shift):
    gt = square(40, (50, 50), 240)  # diagonal 339 px: a tolerance of ceil(2.7) = 3 px
    pred = square(40, (50, 50 + shift), 240)
    got = davis.boundary_f(pred, gt)
    assert got == pytest.approx(davis_boundary_reference(pred, gt), abs=1e-9)
    if shift <= 3:
        assert got == 1.0  # every boundary pixel within the tolerance
    if shift == 30:
        assert got < 0.6


def test_boundary_f_edge_cases():
    empty, a = np.zeros((64, 64), bool), square(10, (5, 5), 64)
    assert davis.boundary_f(empty, empty) == 1.0
    assert davis.boundary_f(a, empty) == 0.0 and davis.boundary_f(empty, a) == 0.0


def test_propagation_follows_a_moving_square():
    frames, masks = moving_square_video()
    feats = [davis.lab_features(f, 4) for f in frames]
    preds = davis.propagate(feats, masks[0])
    assert len(preds) == len(frames) and preds[0].shape == masks[0].shape
    s = davis.score(preds, masks)
    assert s["J"] > 0.8 and s["F"] > 0.6, s
    # a copied first mask falls behind the moving square
    assert davis.score(davis.copy_first(masks[0], len(frames)), masks)["J"] < s["J"]


def test_propagation_needs_its_features():
    """Features that say nothing (constant) cannot move the mask: it stays about where it was."""
    frames, masks = moving_square_video()
    flat = [torch.ones(3, 24, 24) for _ in frames]
    moved = davis.score(davis.propagate(flat, masks[0]), masks)["J"]
    assert moved < davis.score(davis.propagate([davis.lab_features(f, 4) for f in frames], masks[0]), masks)["J"]


def test_flow_chain_follows_a_moving_square():
    """The chain carries the mask forward with the square: its leading edge advances every frame
    (backward flow of the wrong sign would pull it back). It lags, and its trailing edge stays where
    DIS smooths the flow across the motion boundary over the uncovered background: the weakness of
    flow chains the papers compare against, kept as it is."""
    frames, masks = moving_square_video()
    preds = davis.flow_chain(frames, masks[0])
    assert davis.jaccard(preds[1], masks[1]) > 0.8
    lead = [int(np.argwhere(p)[:, 1].max()) for p in preds]
    truth = [int(np.argwhere(m)[:, 1].max()) for m in masks]
    assert all(b > a for a, b in zip(lead, lead[1:])) and all(abs(x - y) <= 6 for x, y in zip(lead, truth))
    assert davis.score(preds, masks)["J"] > davis.score(davis.copy_first(masks[0], len(frames)), masks)["J"]


@pytest.mark.skipif(not (SHARED_DATA / "davis2016-dev").is_dir(), reason="../shared/data/davis2016-dev is not here")
def test_the_real_davis_sequences_read_in_order():
    seqs = davis.read_sequences(SHARED_DATA / "davis2016-dev")
    assert [s.name for s in seqs][:2] == ["blackswan", "breakdance"] and len(seqs) == 10
    assert sum(len(s.frames) for s in seqs) == 645
    for s in seqs:
        assert [f.stem for f in s.frames] == [m.stem for m in s.masks] and all(m.exists() for m in s.masks)


def test_a_folder_without_davis_layout_is_one_clear_error(tmp_path):
    from pretextgen.errors import PretextgenError

    with pytest.raises(PretextgenError, match="DAVIS's layout"):
        davis.read_sequences(tmp_path)


@pytest.mark.skipif(not (SHARED_DATA / "davis2016-dev").is_dir(), reason="../shared/data/davis2016-dev is not here")
def test_eval_davis_runs_end_to_end_on_a_tiny_folder(tmp_path, capsys):
    """``pretextgen eval --davis`` on two real sequences cut to 4 frames, for a tiny rotation run:
    every method's J, F and J&F in [0, 1], per sequence and overall, random = its seeds' mean."""
    import json
    import shutil

    import pretextgen
    from pretextgen.cli import main

    from helpers import TINY

    src = SHARED_DATA / "davis2016-dev"
    for seq in ("blackswan", "cows"):
        for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            out = tmp_path / "davis" / kind / "240p" / seq
            out.mkdir(parents=True)
            for k in range(4):
                shutil.copy(src / kind / "240p" / seq / f"{k:05d}.{ext}", out)
    pretextgen.build(task="rotation", out=tmp_path / "b", samples=16, overrides=TINY["rotation"], backend="opencv",
                     progress=False)
    pretextgen.train(data=tmp_path / "b", out=tmp_path / "r", epochs=1, batch_size=8, overrides=["num_workers=0"],
                     progress=False, device="cpu")
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--davis", str(tmp_path / "davis"),
                 "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "label propagation on DAVIS (2 sequences" in printed and "DIS flow chain" in printed
    d = json.loads((tmp_path / "e.json").read_text())["davis"]
    methods = ("pretext", "random", "pixels", "flow", "copy_first")
    for m in methods:
        assert set(d[m]) == {"J", "F", "JF"} and all(0 <= v <= 1 for v in d[m].values())
        assert d[m]["JF"] == pytest.approx((d[m]["J"] + d[m]["F"]) / 2, abs=1e-3)
    assert set(d["sequences"]) == {"blackswan", "cows"} and set(d["sequences"]["cows"]) == set(methods)
    assert d["random"]["J"] == pytest.approx(np.mean([r["J"] for r in d["random_seeds"]]), abs=1e-3)
    diffs = [q["pretext"]["JF"] - q["random"]["JF"] for q in d["sequences"].values()]
    assert d["gain"]["JF"] == pytest.approx(np.mean(diffs), abs=1e-3)
    assert min(diffs) - 1e-3 <= d["gain"]["ci"][0] <= d["gain"]["JF"] <= d["gain"]["ci"][1] <= max(diffs) + 1e-3
    assert "J&F over the random trunks" in printed
    assert (d["settings"]["topk"], d["settings"]["radius"], d["settings"]["temperature"]) == (10, 12, 0.05)
    assert main(["eval", "--checkpoint", str(tmp_path / "r")]) == 2  # neither --data nor --davis: one line
