"""WebDataset-compatible tar shards and the manifest.

Members are ``<key>.<field>.<ext>``, ``<key>.cls`` and ``<key>.json``, keys zero-padded sample
indices without dots. Tars are reproducible: fixed mtime, owner and mode, members sorted. A shard is
written as ``<name>.tmp`` and renamed when complete; the manifest lists each with its sha256.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# 2: context's noise is a bank offset (``noise_offset``, was ``noise_seed``) and exemplar draws its
# transformations as one array: plans of schema 1 are not what this version draws from (seed, index).
# 3: jigsaw resamples each tile from its own source box (``views`` per tile, integer ``boxes``),
# keeps ``gap`` between tiles, and defaults to tile_norm, color_jitter 0.1 and gray_prob 0.66.
SCHEMA_VERSION = 3
KEY_DIGITS = 9


def sample_key(index: int) -> str:
    return f"{index:0{KEY_DIGITS}d}"


def shard_name(task: str, number: int) -> str:
    return f"{task}-{number:06d}.tar"


def _encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _encode_png(array: np.ndarray) -> bytes:
    import cv2

    a = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    # Lossless at any setting. Level 1, zlib's RLE strategy and the "up" filter on every row
    # measured fastest for their size (BENCHMARKS.md); an OpenCV without the filter option keeps
    # libpng's adaptive filters.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, png = cv2.imencode(".png", a, params)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


def _decode_png(data: bytes) -> np.ndarray:
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_BGR2RGB)


# The one table of member codecs, by extension: (encode, decode). Unknown extensions read as bytes.
CODECS = {
    "npy": (_encode_npy, lambda data: np.load(io.BytesIO(data), allow_pickle=False)),
    "png": (_encode_png, _decode_png),
    "cls": (lambda label: str(int(label)).encode(), lambda data: int(data.decode())),
    "json": (lambda meta: json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(), json.loads),
}
# How the fields a task declares as PNG images may be stored: "npy" stores them raw instead
# (lossless either way; PNG is about half the bytes, npy is much faster to write and read).
PIXEL_FORMATS = ("png", "npy")


def stored_ext(field, pixels: str = "png") -> str:
    """A field's member extension in a build made with ``pixels`` (``PIXEL_FORMATS``)."""
    return "npy" if pixels == "npy" and field.ext == "png" else field.ext


def encode_array(ext: str, array: np.ndarray) -> bytes:
    if ext not in ("npy", "png"):
        raise ValueError(f"no encoder for .{ext}")
    return CODECS[ext][0](array)


def decode_member(name: str, data: bytes):
    """Inverse of the encoders, by extension: arrays for .npy/.png, int for .cls, dict for .json."""
    codec = CODECS.get(name.rsplit(".", 1)[-1])
    return codec[1](data) if codec else data


class FieldEncoder:
    """A sample's fields -> its members to store ({"<field>.<ext>": bytes}), per the task's schema and
    the build's pixel format (``stored_ext``). What a backend gets from the store: it encodes in its
    worker threads without knowing formats; picklable (names and extensions only)."""

    def __init__(self, task, pixels: str = "png"):
        self.specs = [(f.name, stored_ext(f, pixels)) for f in task.fields]

    def __call__(self, fields: dict) -> dict:
        return {f"{name}.{ext}": encode_array(ext, fields[name]) for name, ext in self.specs}


def encode_fields(task, fields: dict, pixels: str = "png") -> dict:
    """{field name: array} -> the members to store (``FieldEncoder``)."""
    return FieldEncoder(task, pixels)(fields)


def sample_members(members: dict, meta: dict) -> dict:
    """All members of one sample, without the key: the encoded fields, ``cls`` and ``json``."""
    out = dict(members)
    out["cls"] = CODECS["cls"][0](meta["label"])
    out["json"] = CODECS["json"][0](meta)
    return out


_BLOCK = 512
_RECORD = 20 * _BLOCK  # tarfile pads archives to a multiple of its record size


def ustar_header(name: str, size: int) -> bytes:
    """The USTAR header tarfile writes for a regular file with mode 0644, uid/gid 0, no owner
    names and mtime 0 (a test checks the bytes against tarfile's). Written here because tarfile's
    ``addfile`` costs too much per member in the main process (BENCHMARKS.md)."""
    raw = name.encode()
    if len(raw) > 100:
        raise ValueError(f"member name longer than 100 bytes: {name!r}")
    h = bytearray(_BLOCK)
    h[0 : len(raw)] = raw
    h[100:148] = b"0000644\0" + b"0000000\0" * 2 + b"%011o\0" % size + b"00000000000\0"
    h[148:156] = b" " * 8  # the checksum counts its own field as spaces
    h[156:157] = b"0"  # regular file
    h[257:265] = b"ustar\x0000"
    h[148:155] = b"%06o\0" % sum(h)
    return bytes(h)


def temporary_name(path: Path) -> Path:
    """``path``'s temporary name, per writer: two attempts at one shard (a Ray retry racing an attempt
    thought dead, two workers given one range) never write into the same file; the last rename wins,
    and both hold the same bytes."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def write_shard(path: Path, samples: list[tuple[str, dict]]) -> dict:
    """Write ``samples`` [(key, {suffix: bytes})] to ``path`` via a temporary file as a tar whose bytes
    equal tarfile's (USTAR); returns its record, sha256 computed while writing."""
    path = Path(path)
    tmp = temporary_name(path)
    digest, size = hashlib.sha256(), 0
    with open(tmp, "wb") as fh:
        def put(b: bytes):
            nonlocal size
            fh.write(b)
            digest.update(b)
            size += len(b)

        for key, members in samples:
            for suffix in sorted(members):
                data = members[suffix]
                put(ustar_header(f"{key}.{suffix}", len(data)))
                put(data)
                if len(data) % _BLOCK:
                    put(bytes(_BLOCK - len(data) % _BLOCK))
        put(bytes(2 * _BLOCK))  # end of archive
        if size % _RECORD:
            put(bytes(_RECORD - size % _RECORD))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "samples": len(samples), "bytes": size, "sha256": digest.hexdigest()}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_shard(path: Path):
    """Yields (key, {suffix: decoded value}) of every sample of a shard, in stored order."""
    path = Path(path)
    with tarfile.open(path) as tar:
        first = tar.next()
    if first is None:
        return
    start = int(first.name.partition(".")[0])
    for pos, members in read_segment(path, start, 0, None, [], lambda p: True):
        if isinstance(members, Damage):
            raise ValueError(members.message)
        yield sample_key(start + pos), {suffix: decode_member(suffix, data) for suffix, data in members.items()}


# ---------------------------------------------------------------- the one shard reader
@dataclass
class Damage:
    """What is wrong at one position of a shard (a missing sample or member, a truncated tar)."""

    message: str


def read_segment(path: Path, first_index: int, lo: int, hi: int | None, required: list[str], want):
    """Yields (position in shard, {suffix: bytes} or Damage or None) for each position lo..hi-1 of
    one shard, in order (``hi`` None: to the shard's end); members of positions where
    ``want(position)`` is false are not read (None). Keys are checked against positions, so a
    missing sample is reported, never replaced by the next. Loader, verify and inspect read here."""
    path = Path(path)
    name = path.name
    todo = iter(range(lo, hi)) if hi is not None else itertools.count(lo)
    pos = next(todo, None)  # the position we wait for
    group: dict = {}  # members of ``pos`` read so far
    seen = False  # whether any member of ``pos`` was seen

    def done():
        if not want(pos):
            return None
        missing = [s for s in required if s not in group]
        if missing:
            return Damage(f"shard {name}: sample {sample_key(first_index + pos)} lacks member "
                           f"{sample_key(first_index + pos)}.{missing[0]}")
        return dict(group)

    last = "(start of file)"
    try:
        try:
            tar = tarfile.open(path, "r:")
        except (OSError, tarfile.TarError) as e:
            raise Truncated(f"shard {name}: cannot be opened as a tar ({e})") from None
        with tar:
            while pos is not None:
                try:
                    m = tar.next()
                except (OSError, tarfile.TarError, EOFError) as e:
                    raise Truncated(f"shard {name}: truncated or corrupt after member {last} ({e})") from None
                if m is None:
                    break
                key, _, suffix = m.name.partition(".")
                if not key.isdigit():
                    raise Truncated(f"shard {name}: unexpected member {m.name} after {last}")
                k = int(key) - first_index
                last = m.name
                if k < lo:
                    continue
                if k != pos:
                    if k < pos:
                        raise Truncated(f"shard {name}: member {m.name} is out of order")
                    if seen:
                        yield pos, done()
                        pos, group, seen = next(todo, None), {}, False
                    while pos is not None and k > pos:
                        yield pos, Damage(f"shard {name}: sample {sample_key(first_index + pos)} is missing "
                                           f"(no member {sample_key(first_index + pos)}.*)")
                        pos = next(todo, None)
                    if pos is None:
                        break
                seen = True
                if want(pos):
                    try:
                        data = tar.extractfile(m).read()
                    except (OSError, tarfile.TarError, EOFError) as e:
                        raise Truncated(f"shard {name}: member {m.name} is truncated ({e})") from None
                    if len(data) != m.size:
                        raise Truncated(f"shard {name}: member {m.name} is truncated ({len(data)} of {m.size} bytes)")
                    group[suffix] = data
    except Truncated as t:
        while pos is not None:
            yield pos, t.damage
            pos = next(todo, None)
        return
    if pos is not None and seen:
        yield pos, done()
        pos = next(todo, None)
    while pos is not None and hi is not None:
        yield pos, Damage(f"shard {name}: ends before sample {sample_key(first_index + pos)} "
                           f"(no member {sample_key(first_index + pos)}.*)")
        pos = next(todo, None)


class Truncated(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.damage = Damage(message)


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    path = Path(path)
    tmp = temporary_name(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# The plan step's files (``jobs.write_plan``) and the job-array workers' partial manifests.
PLAN_FILE, SOURCES_FILE, PARTS_DIR = "plan.json", "sources.json", "parts"


def read_manifest(out: Path) -> dict:
    from .errors import PretextgenError

    path = Path(out) / "manifest.json"
    if not path.exists() and (Path(out) / PLAN_FILE).exists():
        raise PretextgenError(f"{out} holds a planned build without manifest.json: when its workers are done, "
                              f"run pretextgen merge {out}")
    if not path.exists():
        raise PretextgenError(f"{out} holds no manifest.json: not a pretextgen build (make one with "
                              f"pretextgen build --task TASK --out {out})")
    return json.loads(path.read_text())


def read_samples(out: Path, positions) -> list[dict]:
    """Decoded samples of a build at the given positions (0-based, manifest order): {field: array,
    "label", "json", "index"}. Only the chosen samples' members are read (inspect, the audit)."""
    from .errors import PretextgenError

    out = Path(out)
    m = read_manifest(out)
    wanted = sorted(set(int(p) for p in positions))
    result, base = [], 0
    for rec in m["shards"]:
        lo, hi = base, base + rec["samples"]
        inside = [p - lo for p in wanted if lo <= p < hi]
        base = hi
        if not inside:
            continue
        chosen = set(inside)
        for p, item in read_segment(out / rec["name"], rec["first_index"], min(inside), max(inside) + 1,
                                    list(m["fields"]), chosen.__contains__):
            if item is None:
                continue
            if isinstance(item, Damage):
                raise PretextgenError(item.message + "; run `pretextgen verify` for the full list")
            sample = {}
            for suffix, data in item.items():
                name = suffix.rsplit(".", 1)[0]
                sample["label" if name == "cls" else name] = decode_member(suffix, data)
            sample["index"] = rec["first_index"] + p
            result.append(sample)
    return result
