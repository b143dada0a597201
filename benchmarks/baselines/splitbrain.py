"""Split-brain loader in the style of the PyTorch re-implementations of Zhang et al. 2017: the
colorization baseline's crop and Lab; inputs L and ab, targets the dense ab encoding and L bins."""
import numpy as np

from pretextgen.lab import gamut_bins

from .colorization import crop_lab, soft_encode_dense


def make(path, rng, p):
    lab = crop_lab(path, rng, p)
    t = lab[:: p.target_stride, :: p.target_stride]
    ab_target = soft_encode_dense(t[..., 1:], gamut_bins(p.grid_step).astype(np.float64), p.neighbours, p.sigma)
    l_bins = np.clip(np.floor(t[..., 0] * p.l_bins / 100), 0, p.l_bins - 1).astype(np.uint8)
    return (lab[..., :1].astype(np.float32), lab[..., 1:].astype(np.float32), ab_target, l_bins), 0
