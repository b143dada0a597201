"""Listing, checking and decoding source images.

Every file under ``--source`` is listed (sorted relative paths, so the listing and its digest are
the same on every machine). A scan decodes each file once, strictly, and keeps those that are
usable; the others are skipped with a reason that ends up in the manifest. Source coordinates are
pixel coordinates of the image as a viewer shows it: EXIF orientation applied, like DALI's and
OpenCV's decoders do.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
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
    # Bit r * FLAT_GRID + c is set when cell (r, c) of a FLAT_GRID x FLAT_GRID grid over the image
    # as shown is one colour: a view inside such cells only is not worth a sample (``flat_view``).
    flat_cells: int = 0
    # What the decoder said about a file kept anyway (junk between header segments, zero padding
    # after a scan, a libpng warning about a colour profile): every decode of it is then quiet
    # (``imdecode``), and DALI gets our decode instead of the file.
    quirk: str = ""

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


GLOB_CHARS = "*?["


def list_source(source) -> tuple[Path, list[str]]:
    """(root, sorted relative paths) of ``--source``: a folder (``list_files``), a text file listing one
    path per line (absolute, or relative to the list's folder; ``#`` starts a comment), a glob
    (``photos/**/*.jpg``), or one binary file (a photo or a clip: told from a list by its content). Paths are stored relative to the root: the folder, the listed files' common
    folder, or the glob's folder before its first wildcard; so a build can move with its sources."""
    text = os.path.expanduser(str(source))  # a quoted '~/photos/*.jpg' reaches us unexpanded
    if any(c in text for c in GLOB_CHARS) and not Path(text).exists():
        import glob

        parts = Path(text).parts
        fixed = next(i for i, p in enumerate(parts) if any(c in p for c in GLOB_CHARS))
        root = Path(*parts[:fixed]) if fixed else Path(".")
        hits = [Path(h) for h in glob.glob(text, recursive=True)]
        files = sorted({h.relative_to(root).as_posix() for h in hits if h.is_file()
                        and not any(p.startswith(".") for p in h.relative_to(root).parts)})
        if not files:
            raise PretextgenError(f"source {text}: the glob matches no file")
        return root, files
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, ValueError):  # binary: one photo or clip (the scan judges it), not a list
            return path.parent, [path.name]
        listed = [(path.parent / p).resolve() for p in (ln.split("#")[0].strip() for ln in lines) if p]
        if not listed:
            raise PretextgenError(f"source {path} lists no path")
        missing = [str(p) for p in listed if not p.is_file()]
        if missing:
            raise PretextgenError(f"source {path}: {len(missing)} listed files do not exist (e.g. "
                                  f"{', '.join(missing[:3])}); fix the list")
        root = Path(os.path.commonpath([p.parent for p in listed]))
        return root, sorted({p.relative_to(root).as_posix() for p in listed})
    return path, list_files(path)


def listing_digest(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f}\t{(Path(root) / f).stat().st_size}\n".encode())
    return h.hexdigest()


def _plain(fmt: str, mode: str, opaque: bool = False) -> bool:
    """Files that DALI's and OpenCV's decoders read exactly like our reference loader: 8-bit RGB and
    gray JPEGs and PNGs, and PNGs with an alpha channel that is 255 everywhere (the decoders drop
    it, as compositing on black would leave every pixel as it is)."""
    return fmt in ("JPEG", "PNG") and (mode in ("RGB", "L") or (fmt == "PNG" and mode in ("RGBA", "LA") and opaque))


_STDERR_LOCK = threading.RLock()  # re-entrant: a quiet decode may run inside a captured block


@contextlib.contextmanager
def _said_to(said: list[str]):
    """Runs the block with the process's stderr captured; appends what was written there to
    ``said``, line by line. libjpeg, libpng and libtiff write their warnings to stderr, without a
    file name: they belong in a skip reason or a source's ``quirk``, not on the terminal."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said += [line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()]


def decode_reporting(buf: np.ndarray, flag: int) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` and what the decoder said, captured, not shown."""
    import cv2

    with _said_to(said := []):
        image = cv2.imdecode(buf, flag)
    return image, said


def imdecode(buf: np.ndarray, flag: int, quiet: bool) -> np.ndarray | None:
    """``cv2.imdecode``; ``quiet`` (a source with a ``quirk``): what the decoder says is dropped."""
    import cv2

    return decode_reporting(buf, flag)[0] if quiet else cv2.imdecode(buf, flag)


def jpeg_damage(buf: np.ndarray, shorter_side: int = 1 << 30) -> tuple[np.ndarray | None, str | None, str]:
    """(the JPEG reduced, by up to 8x while its shorter side stays >= 128 px, None, its harmless
    quirk or ""), or (None, why it is damaged, ""). Decodes every byte of its entropy-coded data
    (reduced, the IDCT and colour work shrink up to 64-fold, the Huffman decoding does not);
    ``jpegs.verdict`` judges what libjpeg said by the file's structure."""
    import cv2

    from .jpegs import verdict

    flag = next((f for k, f in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)) if shorter_side // k >= 128), cv2.IMREAD_COLOR)
    image, said = decode_reporting(buf, flag)
    damage, quirk = verdict(buf.tobytes(), said) if said else (None, None)
    if damage:
        return None, damage, ""
    if image is None:
        return None, "corrupt JPEG data: the decoder gave up (a truncated file, or a damaged header or table)", ""
    return image, None, quirk or ""


# A source whose every channel spans at most this many grey levels is one colour: no view cut from
# it can hold a pretext signal (rotation, tile order, patch position are all unreadable on it).
FLAT_LEVELS = 2


FLAT_GRID = 16  # cells of 1/16 of each side: 32 bytes per source


def _spread(a: np.ndarray) -> int:
    """Largest range of any channel (alpha excluded) of 8-bit-scaled pixels."""
    flat = a.reshape(-1, a.shape[2] if a.ndim == 3 else 1)
    return int((flat.max(0).astype(np.int64) - flat.min(0)).max()) if flat.size else 0


def _colour_channels(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] in (2, 4):
        a = a[..., :-1]
    return a // 257 if a.dtype == np.uint16 else a


def flat_cells(pixels: np.ndarray) -> int:
    """The bit mask of ``Source.flat_cells`` from the decoded image (or a reduced copy of it)."""
    a = _colour_channels(pixels)
    h, w = a.shape[:2]
    if h < 4 * FLAT_GRID or w < 4 * FLAT_GRID:  # cells of fewer than 4 x 4 px say nothing
        return 0
    ys, xs = np.linspace(0, h, FLAT_GRID + 1).astype(int), np.linspace(0, w, FLAT_GRID + 1).astype(int)
    mask = 0
    for r in range(FLAT_GRID):
        for c in range(FLAT_GRID):
            if _spread(a[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]) <= FLAT_LEVELS:
                mask |= 1 << (r * FLAT_GRID + c)
    return mask


def _view_bounds(v: dict) -> tuple[float, float, float, float]:
    """The source px a view reads: its box, or the bounding box of an affine view's corners."""
    if "box" in v:
        return tuple(v["box"])
    m = np.asarray(v["affine"], np.float64).reshape(2, 3)
    w, h = v["size"]
    corners = m @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64)
    return corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max()


def flat_view(src: Source, v: dict) -> bool:
    """True when every grid cell the view reads is one colour."""
    if not src.flat_cells:
        return False
    x0, y0, x1, y1 = _view_bounds(v)
    cw, ch = src.width / FLAT_GRID, src.height / FLAT_GRID
    c0, c1 = max(0, int(x0 // cw)), min(FLAT_GRID - 1, int(np.ceil(x1 / cw)) - 1)
    r0, r1 = max(0, int(y0 // ch)), min(FLAT_GRID - 1, int(np.ceil(y1 / ch)) - 1)
    return all(src.flat_cells >> (r * FLAT_GRID + c) & 1 for r in range(r0, r1 + 1) for c in range(c0, max(c0, c1) + 1))


def one_colour(pixels: np.ndarray) -> str | None:
    """The reason to skip an image that is one colour (``FLAT_LEVELS``), else None; ``pixels`` is
    the decoded image or a reduced copy, any channel count, 8 or 16 bits (alpha ignored)."""
    a = np.asarray(pixels)
    step = max(1, max(a.shape[:2]) // 512)  # a sample of the pixels is enough to see a spread
    spread = _spread(_colour_channels(a[::step, ::step]))
    return f"flat image: one colour (every channel within {spread} grey levels)" if spread <= FLAT_LEVELS else None


def check_source(root: Path, rel: str, min_side: int) -> tuple[Source | None, str | None]:
    """(Source, None) if usable, else (None, reason). Decodes the whole file, strictly: a JPEG whose
    decoder warns is damaged unless the warning is a harmless quirk (``jpeg_damage``), a PNG must
    decode in OpenCV, other formats must load without an error. Nothing reaches the terminal."""
    import cv2
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
                quirk = ""
                buf = read_file(str(path)) if fmt in ("JPEG", "MPO", "PNG") else None
                if fmt in ("JPEG", "MPO"):  # MPO: a camera's JPEG with more images after its end marker
                    pixels, damage, quirk = jpeg_damage(buf, min(w, h))
                    if damage:
                        return None, damage
                elif fmt == "PNG":  # decoded by OpenCV, as the loaders will (libpng is stricter than PIL)
                    pixels, said = decode_reporting(buf, cv2.IMREAD_UNCHANGED)
                    if pixels is None:
                        return None, "corrupt or truncated image: " + (said[0] if said else "OpenCV cannot decode it")
                    quirk = "; ".join(said)
                else:
                    im.load()  # strict: a truncated or damaged file raises here
                    pixels = np.asarray(im) if im.mode not in ("P", "1", "CMYK") else np.asarray(im.convert("RGB"))
                # 8-bit PNGs only (IHDR's bit depth): decoders turn 16-bit ones to 8 bits their own way.
                opaque = (mode in ("RGBA", "LA") and fmt == "PNG" and buf[24:25].tolist() == [8]
                          and bool(pixels[..., -1].min() == 255))
                # PIL finds a PNG's EXIF by decoding it all: only where an eXIf chunk may be.
                no_exif = fmt == "PNG" and "exif" not in im.info and b"eXIf" not in buf.tobytes()
                orientation = 1 if no_exif else im.getexif().get(ORIENTATION, 1)
                # The grid is over the image as shown: OpenCV's JPEG decode turned it already; other
                # files turned by EXIF get no grid (rare; their views are then never called flat).
                cells = 0 if fmt != "JPEG" and orientation != 1 else flat_cells(pixels)
                flat = one_colour(pixels)
                if flat:
                    return None, flat
                if orientation in (5, 6, 7, 8):  # shown turned by 90 degrees
                    w, h = h, w
    except UnidentifiedImageError:
        return None, "not an image (no decoder recognises it)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return None, f"corrupt or truncated image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    src = Source(rel, w, h, fmt, mode, host_decode=not _plain(fmt, mode, opaque), flat_cells=cells, quirk=quirk)
    if src.host_decode:  # dimensions as our loader sees them (it is the one that feeds backends)
        try:
            with _said_to(said := []):
                hgt, wid = load_rgb(Path(root), src).shape[:2]
        except Exception as e:  # noqa: BLE001 - any decoder failure is a reason to skip
            return None, f"cannot convert {fmt} {mode} image to RGB: {e}"
        src = Source(rel, wid, hgt, fmt, mode, True, cells, quirk or "; ".join(said))
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
    """rgb x alpha / 255, rounded, computed only where alpha is below 255 and in integers (no tie
    can occur, so it equals the rounded float product)."""
    see_through = alpha != 255
    if not see_through.any():
        return np.ascontiguousarray(rgb)
    out = np.array(rgb)
    a = alpha[see_through].astype(np.uint32)[:, None]
    out[see_through] = ((out[see_through].astype(np.uint32) * a + 127) // 255).astype(np.uint8)
    return out


def load_bgr(root: Path, src: Source, scale: int = 1) -> np.ndarray:
    """A plain source (``not src.host_decode``) as OpenCV decodes it, in BGR order. Views cut and
    resized from it, then turned to RGB, are byte for byte those cut from ``load_rgb`` (resizing and
    warping treat channels alike; tested), and converting a view costs a fraction of converting the
    whole photo. ``scale`` > 1 (``geometry.jpeg_scale``, which divides both
    sides): a JPEG decoded at 1/scale, by libjpeg in the DCT domain up to 1/8, then averaged over
    whole blocks of that image (OpenCV's area filter at an integer factor) beyond."""
    import cv2

    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
        scale, cv2.IMREAD_REDUCED_COLOR_8)
    bgr = imdecode(read_file(os.path.join(root, src.path)), flag, bool(src.quirk))  # EXIF applied
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
        a = imdecode(buf, cv2.IMREAD_UNCHANGED, bool(src.quirk))
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
    """A file's bytes as a uint8 array, paid per sample: one raw ``readinto``, cheaper than
    ``np.fromfile`` (``benchmarks/bench_host.py``, BENCHMARKS.md)."""
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
    """Bytes that DALI's decoder turns into exactly ``load_rgb``: the file itself when it is plain
    and quiet, else a lossless PNG of the normalised pixels."""
    import cv2

    if not src.host_decode and not src.quirk:
        return read_file(os.path.join(root, src.path))
    rgb = load_rgb(root, src)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return png.reshape(-1)


# A source that is not a JPEG is decoded whole on every visit (no DCT scaling): one this many times
# the median source's pixels, and of at least SLOW_MIN_MP megapixels, is named in the build summary
# (a 12 MP PNG costs 220 ms per visit: BENCHMARKS.md).
SLOW_FACTOR, SLOW_MIN_MP = 20, 4.0


def slow_sources(sources: list[Source]) -> list[dict]:
    """Sources that cost far more per visit than the rest: [{"source", "megapixels", "format", "times"}]."""
    if not sources:
        return []
    median = float(np.median([s.width * s.height for s in sources]))
    out = []
    for s in sources:
        px = s.width * s.height
        if s.format != "JPEG" and px >= SLOW_MIN_MP * 1e6 and px >= SLOW_FACTOR * median:
            out.append({"source": s.path, "megapixels": round(px / 1e6, 1), "format": s.format,
                        "times": round(px / median)})
    return out


def slow_summary(slow: list[dict], examples: int = 3) -> list[str]:
    if not slow:
        return []
    names = ", ".join(f"{s['source']} ({s['megapixels']} MP {s['format']}, {s['times']}x the median pixels)"
                      for s in slow[:examples])
    more = f" and {len(slow) - examples} more" if len(slow) > examples else ""
    return [f"slow: {len(slow)} source(s) decoded whole on every visit: {names}{more}; "
            "as JPEGs or shrunk they would build faster"]


def quirky_sources(sources: list[Source]) -> list[dict]:
    """Sources kept although their decoder spoke: [{"source", "quirk"}]."""
    return [{"source": s.path, "quirk": s.quirk} for s in sources if s.quirk]


def quirk_summary(quirky: list[dict], examples: int = 3) -> list[str]:
    if not quirky:
        return []
    some = "; ".join(f"{q['source']}: {q['quirk']}" for q in quirky[:examples])
    more = f"; and {len(quirky) - examples} more" if len(quirky) > examples else ""
    return [f"kept {len(quirky)} source(s) that the decoder warned about, every pixel intact ({some}{more})"]


def skip_summary(skipped: list[dict], examples: int = 3) -> list[str]:
    """One line per kind of reason (the words before a colon or bracket), most frequent first, with
    examples: ``skipped 3: corrupt JPEG data (e.g. a.jpg, b.jpg, c.jpg)``."""
    import re
    from collections import Counter

    reason = [re.split(r"[:(]", s["reason"])[0].strip() for s in skipped]
    lines = []
    for r, n in Counter(reason).most_common():
        some = [s["source"] for s, why in zip(skipped, reason) if why == r][:examples]
        lines.append(f"skipped {n}: {r} (e.g. {', '.join(some)})")
    return lines


SCAN_RULES = 3  # in the scan cache's key: raise it when check_source decides differently


def cache_dir() -> Path:
    return Path(os.environ.get("PRETEXTGEN_CACHE", Path.home() / ".cache" / "pretextgen"))


def scan_cached(root: Path, files: list[str], min_side: int, workers: int, progress: bool | None):
    """``sources.scan`` with its result cached per (folder, file names, sizes, mtimes, min_side):
    a second build over the same photos does not decode them all again."""
    h = hashlib.sha256(f"{Path(root).resolve()}\n{min_side}\n{SCAN_RULES}\n".encode())
    for f in files:
        st = (Path(root) / f).stat()
        h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    path = cache_dir() / f"scan-{h.hexdigest()[:32]}.json"
    try:
        data = json.loads(path.read_text())
        return [Source(**s) for s in data["sources"]], data["skipped"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from .progress import Progress

    bar = Progress(len(files), "scanning", "files", progress)
    sources, skipped = scan(root, files, min_side, workers, bar)
    bar.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from .shards import write_json

        write_json(path, {"sources": [s.to_dict() for s in sources], "skipped": skipped})
    except OSError:
        log.warning("cannot write the scan cache %s", path)
    return sources, skipped


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
