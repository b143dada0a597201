"""Colorization loader in the style of the PyTorch re-implementations of Zhang et al. 2016: PIL crop
+ resize + flip, skimage.color.rgb2lab, then the soft encoding as a dense (h*w, Q) array built from
the 5 nearest bins of every target pixel (their NNEncode), bins = the in-gamut set."""
import numpy as np
from PIL import Image
from skimage.color import rgb2lab

from pretextgen.lab import gamut_bins

from .rotation import square_crop


def soft_encode_dense(ab, bins, k, sigma):
    x = ab.reshape(-1, 2)
    d = np.sqrt(((x[:, None, :] - bins[None, :, :]) ** 2).sum(-1))
    nn = np.argsort(d, axis=1)[:, :k]
    w = np.exp(-np.take_along_axis(d, nn, 1) ** 2 / (2 * sigma**2))
    out = np.zeros((len(x), len(bins)), np.float32)
    np.put_along_axis(out, nn, w / w.sum(1, keepdims=True), 1)
    return out.reshape(ab.shape[:2] + (len(bins),))


def crop_lab(path, rng, p):
    """The crop (PIL), mirrored or not, in Lab (skimage, float64)."""
    crop = square_crop(path, rng, p)
    if rng.random() < p.flip_prob:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return rgb2lab(np.asarray(crop))


def make(path, rng, p):
    lab = crop_lab(path, rng, p)
    target = soft_encode_dense(lab[:: p.target_stride, :: p.target_stride, 1:], gamut_bins(p.grid_step).astype(np.float64),
                               p.neighbours, p.sigma)
    return (lab[..., :1].astype(np.float32), target), 0
