"""Listing, checking and decoding source images.

Every file under ``--source`` is listed (sorted relative paths, so the listing and its digest are
the same on every machine). A scan decodes each file once, strictly, and keeps those that are
usable; the others are skipped with a reason that ends up in the manifest. Source coordinates are
pixel coordinates of the image as a viewer shows it: EXIF orientation applied, like DALI's and
OpenCV's decoders do.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import PretextgenError

log = logging.getLogger("pretextgen")

ORIENTATION = 0x0112  # the EXIF tag; values 5-8 swap width and height when shown

# The real photographs that scikit-image ships: the default input of the demo and the tests.
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)


@dataclass(frozen=True)
class Source:
    path: str  # relative to the source root, "/"-separated
    width: int
    height: int
    format: str  # "JPEG", "PNG", ...
    mode: str  # PIL mode of the file: "RGB", "L", "CMYK", "RGBA", "I;16", ...
    host_decode: bool  # True when decoders other than ours could read it differently

    def to_dict(self) -> dict:
        return asdict(self)


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def default_source() -> tuple[Path, list[str]]:
    root = skimage_data_dir()
    return root, [name for name in SKIMAGE_PHOTOS if (root / name).exists()]


def list_files(root: Path) -> list[str]:
    """Every regular file under root (hidden ones excluded), sorted, as relative posix paths."""
    root = Path(root)
    if not root.exists():
        raise PretextgenError(f"source {root} does not exist")
    if not root.is_dir():
        raise PretextgenError(f"source {root} is not a directory")
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # a link back to a folder already listed: a loop, or the
            dirnames[:] = []  # same photos twice (the first path in sorted order keeps them)
            log.warning("not listing %s again: it is a link to a folder already listed", dirpath)
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        out += [(rel / f).as_posix() for f in filenames if not f.startswith(".")]
    out.sort()
    if not out:
        raise PretextgenError(f"source {root} holds no files")
    return out


def listing_digest(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f}\t{(Path(root) / f).stat().st_size}\n".encode())
    return h.hexdigest()


def _plain(fmt: str, mode: str) -> bool:
    """Files that DALI's and OpenCV's decoders read exactly like our reference loader."""
    return fmt in ("JPEG", "PNG") and mode in ("RGB", "L")


def check_source(root: Path, rel: str, min_side: int) -> tuple[Source | None, str | None]:
    """(Source, None) if usable, else (None, reason). Decodes the whole file, strictly (a JPEG at 1/8
    scale: all of its data is read and checked, less pixel work is done)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(root) / rel
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning and EXIF chatter
            with Image.open(path) as im:
                fmt, mode = im.format or "?", im.mode
                w, h = im.size
                if fmt == "JPEG":
                    # Every byte of the entropy-coded data is still decoded (a truncated or corrupt
                    # file fails as at full size); only the IDCT and colour work shrink, 64-fold:
                    # 28 ms instead of 61 for a 12 MP photo.
                    im.draft(mode, (max(1, w // 8), max(1, h // 8)))
                im.load()  # strict: a truncated file raises here
                if im.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # shown turned by 90 degrees
                    w, h = h, w
    except UnidentifiedImageError:
        return None, "not an image (no decoder recognises it)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return None, f"corrupt or truncated image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    src = Source(rel, w, h, fmt, mode, host_decode=not _plain(fmt, mode))
    if src.host_decode:  # dimensions as our loader sees them (it is the one that feeds backends)
        try:
            hgt, wid = load_rgb(Path(root), src).shape[:2]
        except Exception as e:  # noqa: BLE001 - any decoder failure is a reason to skip
            return None, f"cannot convert {fmt} {mode} image to RGB: {e}"
        src = Source(rel, wid, hgt, fmt, mode, True)
    if min(src.width, src.height) < min_side:
        return None, f"too small: {src.width}x{src.height}, shorter side below min_side={min_side}"
    return src, None


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def _composite_on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.rint(rgb.astype(np.float32) * a).astype(np.uint8)


def load_bgr(root: Path, src: Source, scale: int = 1) -> np.ndarray:
    """A plain source (``not src.host_decode``) as OpenCV decodes it, in BGR order. Views cut and
    resized from it, then turned to RGB, are byte for byte those cut from ``load_rgb`` (resizing and
    warping treat channels alike; tested), and converting a view costs a fraction of converting the
    whole photo (0.19 ms for 500x375). ``scale`` > 1 (``geometry.jpeg_scale``, which divides both
    sides): a JPEG decoded at 1/scale, by libjpeg in the DCT domain up to 1/8, then averaged over
    whole blocks of that image (OpenCV's area filter at an integer factor) beyond."""
    import cv2

    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
        scale, cv2.IMREAD_REDUCED_COLOR_8)
    bgr = cv2.imdecode(read_file(os.path.join(root, src.path)), flag)  # EXIF applied
    if bgr is None:
        raise OSError(f"OpenCV cannot decode {src.path}")
    if scale > 8:
        bgr = cv2.resize(bgr, (src.width // scale, src.height // scale), interpolation=cv2.INTER_AREA)
    return bgr


def load_rgb(root: Path, src: Source) -> np.ndarray:
    """The source as an HxWx3 uint8 RGB array: gray replicated, CMYK converted, alpha
    composited on black, 16-bit scaled to 8-bit, EXIF orientation applied."""
    import cv2

    if not src.host_decode:
        return cv2.cvtColor(load_bgr(root, src), cv2.COLOR_BGR2RGB)  # gray files -> 3 channels
    path = Path(root) / src.path
    buf = read_file(str(path))
    if src.format != "JPEG":
        a = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if a is not None and a.ndim in (2, 3):
            a = _to_uint8(a)
            if a.ndim == 2:
                return np.repeat(a[..., None], 3, axis=2)
            if a.shape[2] == 2:
                g = _composite_on_black(a[..., :1], a[..., 1])
                return np.repeat(g, 3, axis=2)
            rgb = cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2RGB)
            return _composite_on_black(rgb, a[..., 3]) if a.shape[2] == 4 else rgb
    # CMYK JPEGs (PIL knows Adobe's inverted CMYK) and anything OpenCV cannot read.
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            return _composite_on_black(rgba[..., :3], rgba[..., 3])
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def read_file(path: str) -> np.ndarray:
    """A file's bytes as a uint8 array, paid per sample: 15-17 us for a 53 KB JPEG against 25 us for
    ``np.fromfile(Path(root) / rel)`` (``benchmarks/bench_host.py``, development machine)."""
    with open(path, "rb", buffering=0) as f:
        data = np.empty(os.fstat(f.fileno()).st_size, np.uint8)
        view, got = memoryview(data), 0
        while got < len(data):  # a raw read may return less than asked
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    return data[:got]


def encoded_for_decoder(root: Path, src: Source) -> np.ndarray:
    """Bytes that DALI's decoder turns into exactly ``load_rgb``: the file itself when it is plain,
    else a lossless PNG of the normalised pixels."""
    import cv2

    if not src.host_decode:
        return read_file(os.path.join(root, src.path))
    rgb = load_rgb(root, src)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return png.reshape(-1)


def _check_chunk(args):
    root, rels, min_side = args
    return [check_source(root, r, min_side) for r in rels]


def scan(root: Path, files: list[str], min_side: int, workers: int = 1, progress=None):
    """Check every file; returns (usable sources, skipped as [{"source", "reason"}])."""
    chunks = [files[i : i + 64] for i in range(0, len(files), 64)]
    jobs = [(str(root), c, min_side) for c in chunks]
    from .parallel import map_chunks

    results = map_chunks(_check_chunk, jobs, workers, progress)
    good, skipped = [], []
    for rel, (src, reason) in zip(files, results):
        if src is None:
            skipped.append({"source": rel, "reason": reason})
        else:
            good.append(src)
    return good, skipped
