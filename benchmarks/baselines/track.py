"""Wang & Gupta style triplet loader: read track_len + 1 consecutive frames with OpenCV, Farneback
flow between them (full frame, gray), the most moving patch followed by its median flow, a random
negative patch from a distant frame; PIL crops resized. No cache: flow is computed per sample."""
import cv2
import numpy as np
from PIL import Image


def make(path, rng, p):
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    span = p.track_len + 1
    start = int(rng.integers(0, max(1, n - span)))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    rgb = []
    for _ in range(span):
        ok, bgr = cap.read()
        if not ok:
            break
        rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    flows = [cv2.calcOpticalFlowFarneback(gray[k], gray[k + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
             for k in range(len(gray) - 1)]
    h, w = gray[0].shape
    side = int(p.patch * min(h, w))
    mag = cv2.boxFilter(np.linalg.norm(flows[0], axis=2), -1, (side, side))
    mag[: side // 2 + 1], mag[h - side // 2 - 1 :], mag[:, : side // 2 + 1], mag[:, w - side // 2 - 1 :] = 0, 0, 0, 0
    cy, cx = np.unravel_index(np.argmax(mag), mag.shape)
    x, y = float(cx), float(cy)
    for f in flows:
        x0, y0 = int(np.clip(x - side / 2, 0, w - side)), int(np.clip(y - side / 2, 0, h - side))
        dx, dy = np.median(f[y0 : y0 + side, x0 : x0 + side].reshape(-1, 2), axis=0)
        x, y = x + dx, y + dy
    far = int((start + n // 2) % n)
    cap.set(cv2.CAP_PROP_POS_FRAMES, far)
    ok, bgr = cap.read()
    cap.release()
    neg_im = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    nx, ny = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))

    def crop(im, cx_, cy_):
        x0, y0 = int(np.clip(cx_ - side / 2, 0, w - side)), int(np.clip(cy_ - side / 2, 0, h - side))
        return np.asarray(im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))

    q = crop(Image.fromarray(rgb[0]), cx, cy)
    pos = crop(Image.fromarray(rgb[-1]), x, y)
    neg = crop(neg_im, nx + side / 2, ny + side / 2)
    return np.stack([q, pos, neg]), 1
