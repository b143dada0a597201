"""CIE Lab colour and the quantized ab space of Zhang et al. (colorization 2016, split-brain 2017).

- ``srgb_to_lab``: 8-bit sRGB -> Lab (D65, 2 deg observer), the formulas and constants of
  ``skimage.color.rgb2lab``, in float32. The DALI graph in ``pretextgen.pipelines.lab`` computes the
  same steps on the device.
- ``gamut_bins``: the ab bins (grid ``step``, centres at multiples of it) that some 8-bit sRGB colour
  falls in, for any L in [0, 100]; derived here, not copied from the paper's 313-bin file.
- ``soft_encode``: each ab value spread over its k nearest bins with Gaussian weights.
- ``prior_weights``: class-rebalancing weights from an ab histogram (smoothed, mixed with uniform).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# sRGB (D65) primaries to CIE XYZ, and the D65 white: skimage.color's values.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# XYZ scaled by the white point, in one matrix: t = XYZ_OVER_WHITE @ linear_rgb.
XYZ_OVER_WHITE = XYZ_FROM_RGB / D65_WHITE[:, None]
CIE_EPSILON = 0.008856  # below it the cube root is replaced by a line (CIE 1976)
CIE_SLOPE = 7.787
# (L, a, b) = LAB_FROM_F @ (fx, fy, fz) + LAB_OFFSET
LAB_FROM_F = np.array([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]])
LAB_OFFSET = np.array([-16.0, 0.0, 0.0])


def _linearize(c: np.ndarray) -> np.ndarray:
    """sRGB transfer function inverted: c in [0, 1] -> linear light."""
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


# The 256 linear values of 8-bit codes: a lookup is exact and also what the DALI graph uses.
LINEAR_LUT = _linearize(np.arange(256) / 255.0)


def _lab_from_linear(lin: np.ndarray, dtype=np.float32) -> np.ndarray:
    t = lin.astype(dtype) @ XYZ_OVER_WHITE.T.astype(dtype)
    f = np.where(t > CIE_EPSILON, np.cbrt(t), CIE_SLOPE * t + dtype(16.0 / 116.0))
    return (f @ LAB_FROM_F.T.astype(dtype) + LAB_OFFSET.astype(dtype)).astype(dtype)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> float32 Lab (..., 3): L in [0, 100], a and b in about [-86, 98] / [-108, 95]."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"srgb_to_lab expects uint8 sRGB, got {rgb.dtype}")
    return _lab_from_linear(LINEAR_LUT.astype(np.float32)[rgb])


def _cube_surface(levels: int) -> np.ndarray:
    """uint8 RGB colours with at least one channel at 0 or 255 (``levels`` codes per channel)."""
    v = np.round(np.linspace(0, 255, levels)).astype(np.uint8)
    g, b = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    faces = []
    for ch in range(3):
        for value in (0, 255):
            f = np.empty((g.size, 3), np.uint8)
            others = [k for k in range(3) if k != ch]
            f[:, ch], f[:, others[0]], f[:, others[1]] = value, g, b
            faces.append(f)
    return np.concatenate(faces)


@lru_cache(maxsize=8)
def gamut_bins(step: int = 10) -> np.ndarray:
    """(Q, 2) float32 ab centres (multiples of ``step``), sorted by a then b, of the bins that at
    least one 8-bit sRGB colour falls in (nearest centre), whatever its L. The ab footprint of the
    RGB cube is the footprint of its surface (a vertical line through an inside colour leaves the
    cube through a face), so the 6 x 256^2 face colours give the same set as all 2^24 colours (the
    tests check that). Q = 261 for step 10; see README for why the paper has 313."""
    ab = srgb_to_lab(_cube_surface(256))[:, 1:].astype(np.float64)
    q = np.unique(np.round(ab / step).astype(np.int64), axis=0)  # np.unique sorts by a, then b
    out = (q * step).astype(np.float32)
    out.setflags(write=False)
    return out


def nearest_bin(ab: np.ndarray, step: int = 10) -> np.ndarray:
    """Index in ``gamut_bins(step)`` of the bin nearest to each ab value of an 8-bit colour (...,2)
    -> (...) int: rounding to the lattice is exact because every 8-bit colour's lattice point is in
    the set. Values outside the set (not from an 8-bit colour) raise ValueError."""
    bins = gamut_bins(step)
    q = np.round(np.asarray(ab, np.float64) / step).astype(np.int64)
    lo = (bins.min(0) / step).astype(np.int64)
    hi = (bins.max(0) / step).astype(np.int64)
    table = np.full(tuple(hi - lo + 1), -1, np.int64)
    table[tuple((bins / step).astype(np.int64).T - lo[:, None])] = np.arange(len(bins))
    inside = np.all((q >= lo) & (q <= hi), axis=-1)
    qq = np.where(inside[..., None], q - lo, 0)
    idx = np.where(inside, table[qq[..., 0], qq[..., 1]], -1)
    if (idx < 0).any():
        raise ValueError("ab values outside the sRGB gamut bins")
    return idx


def soft_encode(ab: np.ndarray, bins: np.ndarray, k: int = 5, sigma: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """ab (..., 2) -> (indices (..., k) uint16 nearest first, weights (..., k) float32 summing to 1):
    the k nearest bin centres, weighted by a Gaussian of their distance (Zhang 2016, sigma 5).
    Equal distances come in bin-index order, so equal inputs give equal outputs on every backend.

    Exact, and fast: when the bins lie on a lattice (the gamut bins do), each value is compared with
    the bins of the 5 x 5 lattice nodes around it only. Every other bin is at least 2.5 steps away,
    so a value whose k-th nearest candidate is closer than that has its answer; the few others (far
    outside the gamut) are compared with every bin."""
    shape = ab.shape[:-1]
    x = ab.reshape(-1, 2).astype(np.float64)
    c = bins.astype(np.float64)
    lattice = _lattice(c)
    if lattice is None or k >= len(c):
        idx, d2 = _nearest(x, c, np.broadcast_to(np.arange(len(c)), (len(x), len(c))), k)
    else:
        step, lo, table = lattice
        node = np.rint(x / step).astype(np.int64) - lo  # nearest lattice node, in table coordinates
        # The 25 nodes around it, a-major like the bin order: ties then resolve in bin-index order.
        na = node[:, :1] + np.repeat(np.arange(-2, 3), 5)[None]
        nb = node[:, 1:] + np.tile(np.arange(-2, 3), 5)[None]
        ok = (na >= 0) & (na < table.shape[0]) & (nb >= 0) & (nb < table.shape[1])
        cand = np.where(ok, table.ravel()[np.where(ok, na * table.shape[1] + nb, 0)], -1)
        idx, d2 = _nearest(x, c, cand, k)
        far = ~(d2[:, -1] < (2.5 * step) ** 2)  # a bin outside the window could be nearer
        if far.any():
            idx[far], d2[far] = _nearest(x[far], c, np.broadcast_to(np.arange(len(c)), (int(far.sum()), len(c))), k)
    w = np.exp(-(d2 - d2[:, :1]) / (2.0 * sigma * sigma))  # shifted: no underflow far from bins
    w /= w.sum(1, keepdims=True)
    return idx.astype(np.uint16).reshape(shape + (k,)), w.astype(np.float32).reshape(shape + (k,))


def _nearest(x: np.ndarray, c: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Among candidate bins ``cand`` (N, M) (-1 = none; listed in increasing bin index), the k
    nearest to each x: (indices, squared distances), ties in bin-index order."""
    cc = c[np.maximum(cand, 0)]
    d2 = (x[:, :1] - cc[..., 0]) ** 2 + (x[:, 1:] - cc[..., 1]) ** 2
    d2 = np.where(cand >= 0, d2, np.inf)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, 1), np.take_along_axis(d2, order, 1)


@lru_cache(maxsize=8)
def _lattice_cached(key: bytes, n: int):
    c = np.frombuffer(key, np.float64).reshape(n, 2)
    steps = [np.diff(np.unique(c[:, j])) for j in range(2)]
    if not all(len(s) for s in steps):
        return None
    step = float(min(s.min() for s in steps))
    q = c / step
    if step <= 0 or not np.allclose(q, np.rint(q)):
        return None
    q = np.rint(q).astype(np.int64)
    lo = q.min(0)
    table = np.full(tuple(q.max(0) - lo + 1), -1, np.int64)
    table[tuple((q - lo).T)] = np.arange(n)
    return step, lo, table


def _lattice(c: np.ndarray):
    """(step, lowest node, node -> bin index table) when the bins sit on a square lattice, else None."""
    c = np.ascontiguousarray(c, np.float64)
    return _lattice_cached(c.tobytes(), len(c))


def ab_histogram(lab: np.ndarray, step: int = 10) -> np.ndarray:
    """Counts of the pixels of one Lab image (..., 3), computed from 8-bit sRGB, per gamut bin (Q,)."""
    idx = nearest_bin(lab[..., 1:].reshape(-1, 2), step)
    return np.bincount(idx, minlength=len(gamut_bins(step))).astype(np.int64)


def prior_weights(counts: np.ndarray, bins: np.ndarray, sigma: float = 5.0, lam: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(smoothed prior p, weights w), both (Q,) float64, from bin counts (Zhang 2016, eq. 4):
    p = the empirical distribution smoothed by a Gaussian of ``sigma`` ab units (over the bin
    centres), w proportional to 1 / ((1 - lam) p + lam / Q), scaled so that sum(p * w) = 1."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("the ab histogram is empty")
    c = bins.astype(np.float64)
    d2 = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    p = np.exp(-d2 / (2.0 * sigma * sigma)) @ (counts / counts.sum()) if sigma > 0 else counts / counts.sum()
    p /= p.sum()
    w = 1.0 / ((1.0 - lam) * p + lam / len(p))
    w /= (p * w).sum()
    return p, w


def quantize_l(L: np.ndarray, n_bins: int) -> np.ndarray:
    """L in [0, 100] -> bin index in 0..n_bins-1 (equal widths), uint8 when it fits."""
    idx = np.clip(np.floor(np.asarray(L, np.float64) * (n_bins / 100.0)), 0, n_bins - 1)
    return idx.astype(np.uint8 if n_bins <= 256 else np.uint16)
