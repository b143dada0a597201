"""SimCLR/BYOL-style two-view loader: torchvision's PIL path written out (RandomResizedCrop, flip,
ColorJitter via ImageEnhance in a random order, grayscale, PIL Gaussian blur, ImageOps.solarize)."""
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps


def random_resized_crop(im, rng, p, resample=Image.BILINEAR):
    """torchvision's RandomResizedCrop on a PIL image (fallback: the whole image)."""
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(*p.crop_scale)
        ar = np.exp(rng.uniform(np.log(p.crop_ratio[0]), np.log(p.crop_ratio[1])))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            return im.resize((p.size, p.size), resample, box=(x0, y0, x0 + cw, y0 + ch))
    return im.resize((p.size, p.size), resample)


def _hue(im, shift):
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def make(path, rng, p):
    src = Image.open(path).convert("RGB")
    views = []
    for k in range(p.views):
        im = random_resized_crop(src, rng, p)
        if rng.random() < p.flip_prob:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < p.jitter_prob:
            for op in rng.permutation(4):
                if op == 0:
                    im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - p.brightness, 1 + p.brightness))
                elif op == 1:
                    im = ImageEnhance.Contrast(im).enhance(rng.uniform(1 - p.contrast, 1 + p.contrast))
                elif op == 2:
                    im = ImageEnhance.Color(im).enhance(rng.uniform(1 - p.saturation, 1 + p.saturation))
                else:
                    im = _hue(im, rng.uniform(-p.hue, p.hue))
        if rng.random() < p.gray_prob:
            im = im.convert("L").convert("RGB")
        if rng.random() < p.blur_prob[min(k, len(p.blur_prob) - 1)]:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(*p.blur_sigma)))
        if rng.random() < p.solarize_prob[min(k, len(p.solarize_prob) - 1)]:
            im = ImageOps.solarize(im, 128)
        views.append(np.asarray(im))
    return np.stack(views), 0
