"""A build as independent shard jobs: the unit every way of running a build shares.

Sample i depends on (seed, i) and the plan step's results alone, so a build is
1. **the plan step**, run once (``make_plan``): the task's params, the source listing, the scan's
   skips and the task's own pass (the colour prior, k-means centres, the permutation set), written
   into the output folder as ``plan.json`` (the manifest's header) and ``sources.json`` (the usable
   sources in order, paths relative to the source root);
2. **shard jobs** (``make_shards``): any set of shards, made from the plan files alone, anywhere, in
   any order: in this process, in N processes, as job-array workers or as Ray tasks;
3. **the manifest**: the header plus every shard's record (``finish_manifest``); a job-array build
   writes one partial manifest per worker under ``parts/`` and ``merge`` checks and joins them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .version import __version__
from .backends import get_backend
from .config import load_params, make_params, params_to_dict
from .errors import PretextgenError
from .parallel import default_workers
from .plan import WorkItem
from .registry import get_task, source_kind
from .shards import (PARTS_DIR, PIXEL_FORMATS, PLAN_FILE, SCHEMA_VERSION, SOURCES_FILE, FieldEncoder, file_sha256,
                     sample_key, sample_members, shard_name, write_json, write_shard)
from .sources import list_source, listing_digest

log = logging.getLogger("pretextgen")
DEFAULT_SHARD_BYTES = 256 * 2**20


@dataclass(frozen=True)
class BuildOptions:
    """How a build runs (the CLI's flags; these defaults are its defaults).

    ``processes`` > 1 splits the shards among that many processes, each with its own backend and
    ``workers // processes`` threads, for a GPU that one Python process cannot feed; None: the
    backend's ``default_processes``. Shards are the same bytes whatever the number: DALI batches
    never span two shards, so a sample's batch depends on its shard and ``batch_size`` alone (nvJPEG
    may split a batch between its decoders by the batch, so ``batch_size`` is part of the build's
    identity). ``pixels``: how the fields a task declares as PNG images are stored
    (``shards.PIXEL_FORMATS``). ``full_decode``: the OpenCV backend decodes every JPEG at full size
    (by default a JPEG at least twice as large as a sample's views need is decoded at 1/2 to 1/64:
    ``backends.source_scale``; a resumed build keeps what it started with).

    Scale-out (docs/scale-out.md): ``num_workers``/``worker_index`` make one job-array worker's
    shards (every ``num_workers``-th, from ``worker_index``) and its partial manifest;
    ``shards`` ("4,7:10") restricts a build to those shard numbers; ``ray`` runs one Ray task per
    shard ("local": a Ray instance on this machine; else the address of a cluster), each with
    ``ray_cpus`` CPUs (its threads) and, on the GPU, ``ray_gpus`` of a GPU."""

    samples: int = 512
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"
    config: object = None  # a YAML file of task parameters
    overrides: object = None  # {name: value} or ["name=value", ...]
    resume: bool = False
    workers: int | None = None  # CPU threads (image tasks) or processes (video tasks); None: all cores
    batch_size: int = 64
    shard_bytes: int = DEFAULT_SHARD_BYTES
    progress: bool | None = None
    processes: int | None = None
    pixels: str = "png"
    full_decode: bool = False
    num_workers: int | None = None
    worker_index: int | None = None
    shards: str | None = None
    ray: str | None = None
    ray_cpus: float = 1.0
    ray_gpus: float = 0.25

    def check(self) -> None:
        """One clear error for an option out of range, before any work."""
        if self.samples < 1:
            raise PretextgenError("--samples must be at least 1")
        if self.seed < 0:
            raise PretextgenError("--seed must be 0 or more (NumPy seeds are non-negative integers)")
        if self.batch_size < 1:
            raise PretextgenError("--batch-size must be at least 1")
        if self.shard_bytes <= 0:
            raise PretextgenError("--shard-mb must be above 0")
        if self.pixels not in PIXEL_FORMATS:
            raise PretextgenError(f"--pixels must be one of {', '.join(PIXEL_FORMATS)}, not {self.pixels!r}")
        if self.processes is not None and self.processes < 1:
            raise PretextgenError("--processes must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise PretextgenError("--workers must be at least 1")
        if (self.num_workers is None) != (self.worker_index is None):
            raise PretextgenError("--num-workers and --worker-index go together (or come from SLURM_ARRAY_* / "
                                  "RANK and WORLD_SIZE)")
        if self.num_workers is not None and not 0 <= self.worker_index < self.num_workers:
            raise PretextgenError(f"--worker-index must be in 0..{self.num_workers - 1} (--num-workers "
                                  f"{self.num_workers}), not {self.worker_index}")
        if self.ray is not None and (self.num_workers is not None or self.shards is not None):
            raise PretextgenError("--ray schedules every shard itself: leave out --num-workers, --worker-index "
                                  "and --shards")
        if self.ray_cpus <= 0 or not 0 < self.ray_gpus <= 1:
            raise PretextgenError("--ray-cpus must be above 0 and --ray-gpus in (0, 1]")


@dataclass(frozen=True)
class ShardJob:
    """What a process needs to make some of a build's shards (picklable)."""

    task: str
    params: object
    sources: object  # the kind's usable sources: images.ImageSet, video.build.VideoSetup
    out: Path
    seed: int
    samples: int
    per_shard: int
    backend: str
    device: str
    workers: int
    batch_size: int
    pixels: str
    jpeg_scaling: bool


@dataclass(frozen=True)
class Plan:
    """A planned build: the manifest's header (``plan.json``) and the job that makes its shards."""

    header: dict
    job: ShardJob

    @property
    def shards(self) -> int:
        return self.header["shards_total"]


def sample_meta(task, item: WorkItem, seed: int) -> dict:
    """A sample's JSON: provenance, what its backend executed (``WorkItem.executed``), its plan."""
    return {"task": task.name, "schema": SCHEMA_VERSION, "version": __version__, "index": item.index,
            "seed": seed, **item.executed, "source": item.source.path,
            "source_size": [item.source.width, item.source.height], **item.plan}


_ITEMSIZE = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "int64": 8, "float64": 8}


def sample_bytes_bound(task, params) -> int:
    """An upper bound of one sample's size in a shard (raw pixels + encoder and tar overheads)."""
    total = 16 * 1024  # json, cls, tar headers
    for f in task.fields:
        shape = f.shape(params)
        # The widest dtype the field may have ("uint8 (float16 with tile_norm)" counts 2 bytes).
        item = max(n for name, n in _ITEMSIZE.items() if name in f.dtype) if any(n in f.dtype for n in _ITEMSIZE) else 8
        total += int(np.prod(shape)) * item + (shape[0] if shape else 0) + 1024
    return total


def samples_per_shard(task, params, samples: int, shard_bytes: int) -> int:
    """As many samples as fit ``shard_bytes`` at their largest (``sample_bytes_bound``), at least one."""
    return max(1, min(samples, shard_bytes // sample_bytes_bound(task, params)))


IDENTITY = ("task", "params", "seed", "samples", "backend", "device", "source_digest", "samples_per_shard", "batch_size",
            "pixels")


def identity(m: dict) -> dict:
    """What makes two builds the same build (a resume, a worker and its plan must agree on it)."""
    return {k: m.get(k, "png" if k == "pixels" else None) for k in IDENTITY}  # builds of 0.2.0 stored PNG


def same_versions(a: dict, b: dict) -> bool:
    """Whether two builds, parts or machines have the pretextgen and library versions that decide bytes."""
    return (a.get("version"), a.get("libraries")) == (b.get("version"), b.get("libraries"))


def identity_diff(a: dict, b: dict, keys=IDENTITY) -> list[str]:
    ia, ib = identity(a), identity(b)
    return [k for k in keys if ia[k] != ib[k]]


# ---------------------------------------------------------------- the plan step
def resolve_source(kind, source) -> tuple[Path, list[str], str]:
    """(root, listing relative to root, label as typed) of ``source``: None (the kind's bundled
    default), a folder, a file listing paths, or a glob (``sources.list_source``)."""
    if source is None:
        root, files = kind.default()
        return root, files, kind.default_label
    root, files = list_source(source)
    return root, files, str(source)


def make_plan(task: str, out: Path, source, o: BuildOptions) -> Plan:
    """The plan step: params, listing, scan and the task's own pass (its artefacts are written into
    ``out``, which must exist), and the manifest's header. ``write_plan`` stores it for workers."""
    t = get_task(task)
    kind = source_kind(t.input)
    params = load_params(t, o.config, o.overrides)
    o.check()
    workers = o.workers or default_workers()
    backend, device = kind.resolve(o.backend, o.device)
    root, files, label = resolve_source(kind, source)
    if source is not None and Path(source).is_dir() and out.resolve().is_relative_to(Path(root).resolve()):
        raise PretextgenError(f"--out {out} is inside --source {root}: its shards would be listed as sources "
                              "(and change the listing a --resume checks); choose an output folder outside it")
    usable = kind.prepare(t, params, root, files, out, workers, o.progress, label)
    per_shard = samples_per_shard(t, params, o.samples, o.shard_bytes)
    header = {
        "task": t.name, "params": params_to_dict(params), "seed": o.seed, "samples": o.samples,
        "version": __version__, "schema": SCHEMA_VERSION, "backend": backend, "device": device,
        "libraries": get_backend(backend).libraries(),
        "batch_size": o.batch_size if get_backend(backend).batched else None,
        "source": label, **({"source_path": str(Path(root).resolve())} if source is not None else {}),
        "source_files": len(files), "source_digest": listing_digest(root, files),
        "sources_used": len(usable.sources), "skipped": usable.skipped, "samples_per_shard": per_shard,
        "shards_total": -(-o.samples // per_shard),
        "num_classes": -(-o.samples // t.samples_per_plan(params)) if t.label_is_plan_index else t.num_classes(params),
        "pixels": o.pixels, "fields": t.doc_fields(o.pixels) + ["cls", "json"],
        "jpeg_scaling": kind.jpeg_scaling(backend, o.full_decode),
        "shards": [], "label_histogram": {}, "complete": False,
    }
    if t.prepare is not None:
        header.update(t.prepare(params, out))
    header.update(usable.manifest_extra)
    job = ShardJob(t.name, params, usable, out, o.seed, o.samples, per_shard, backend, device, workers, o.batch_size,
                   o.pixels, header["jpeg_scaling"])
    return Plan(header, job)


def write_plan(out: Path, plan: Plan) -> None:
    """``sources.json`` (the usable sources in order: what every worker plans over), then
    ``plan.json`` (the header, with the listing's sha256), each written atomically."""
    path = Path(out) / SOURCES_FILE
    write_json(path, plan.job.sources.to_json())
    header = {**plan.header, "listing": {"file": SOURCES_FILE, "sha256": file_sha256(path)}}
    write_json(Path(out) / PLAN_FILE, header)


def read_header(out: Path) -> dict:
    path = Path(out) / PLAN_FILE
    if not path.exists():
        raise PretextgenError(f"{out} holds no {PLAN_FILE}: plan the build first (pretextgen plan-sources ..., or "
                              "the build command of worker 0)")
    return json.loads(path.read_text())


def plan_root(header: dict, source=None) -> Path:
    """Where this machine finds the sources: ``source`` (the same files, mounted elsewhere), else
    the plan's absolute ``source_path``, else the kind's bundled default."""
    if source is not None:
        return Path(source) if Path(source).is_dir() else list_source(source)[0]
    if "source_path" in header:
        return Path(header["source_path"])
    return source_kind(get_task(header["task"]).input).default()[0]


def read_plan(out: Path, source=None, workers: int | None = None) -> Plan:
    """The plan in ``out`` (``write_plan``), its sources read from ``sources.json`` (sha256-checked), not
    listed or scanned again."""
    out = Path(out)
    header = read_header(out)
    t = get_task(header["task"])
    params = make_params(t, header["params"])
    listing = out / header["listing"]["file"]
    if file_sha256(listing) != header["listing"]["sha256"]:
        raise PretextgenError(f"{listing} does not match the sha256 in {out / PLAN_FILE}: plan the build again")
    root = plan_root(header, source)
    if not root.is_dir():
        raise PretextgenError(f"the build's sources are not found: {root} is not a folder here; pass --source DIR "
                              "(where they are on this machine)")
    usable = source_kind(t.input).load_sources(t, params, root, json.loads(listing.read_text()))
    if t.load_prepared is not None:  # the plan step's artefacts (the permutation set), not made again
        t.load_prepared(params, out, header)
    header = {k: v for k, v in header.items() if k != "listing"}
    job = ShardJob(t.name, params, usable, out, header["seed"], header["samples"], header["samples_per_shard"],
                   header["backend"], header["device"], workers or default_workers(),
                   header["batch_size"] or BuildOptions.batch_size, header["pixels"], header["jpeg_scaling"])
    return Plan(header, job)


# ---------------------------------------------------------------- shard jobs
def shard_indices(shards, per_shard: int, samples: int):
    """The sample indices of ``shards``, in order."""
    return (i for s in shards for i in range(s * per_shard, min((s + 1) * per_shard, samples)))


def write_shards(task, runner, items, out: Path, per_shard: int, samples: int, seed: int, on_sample, on_shard,
                 background: bool = True) -> None:
    """Run ``items`` through ``runner``; write each shard once its last sample is made and call
    ``on_shard(number, record)``; ``on_sample()`` after every sample.

    With ``background``, one writer thread hashes and writes each complete shard while this thread
    makes the next (both release the GIL on large buffers): the main thread, which feeds the
    backend, no longer stops for them. At most one shard waits for the writer, so memory stays
    within two shards; records reach ``on_shard`` in shard order, from the writer thread, and a
    write's error is raised here. False: every shard is written in this thread (the baseline of
    ``benchmarks/bench_host.py --writes``)."""
    writer = ThreadPoolExecutor(1, thread_name_prefix="pretextgen-writer") if background else None
    pending = None

    def store(s: int, shard_samples: list, hist: Counter, refused: Counter) -> None:
        rec = write_shard(out / shard_name(task.name, s), shard_samples)
        rec.update(number=s, first_index=s * per_shard, label_histogram={str(k): v for k, v in sorted(hist.items())})
        if refused:
            rec["rejected_plans"] = dict(sorted(refused.items()))
        on_shard(s, rec)

    current: list = []
    hist: Counter = Counter()
    refused: Counter = Counter()
    try:
        for item, members in runner.run(items):
            meta = sample_meta(task, item, seed)
            current.append((sample_key(item.index), sample_members(members, meta)))
            if not task.label_is_plan_index:  # one class per plan: a histogram of ones says nothing
                hist[int(meta["label"])] += 1
            refused.update(r["reason"].split(":")[0] for r in meta.get("rejected", ()))
            on_sample()
            s = item.index // per_shard
            if item.index == min((s + 1) * per_shard, samples) - 1:
                if writer is None:
                    store(s, current, hist, refused)
                else:
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(store, s, current, hist, refused)
                current, hist, refused = [], Counter(), Counter()
        if pending is not None:
            pending.result()
    finally:
        if writer is not None:
            writer.shutdown(wait=True)  # a shard being written is finished, even after an error here


def make_shards(job: ShardJob, shards: list[int], on_sample=None, on_shard=None, background: bool = True) -> list[dict]:
    """Make and write ``shards`` of the build ``job`` describes (plan, execute, store); returns their
    records. The one code path of every way of running a build. ``on_shard`` is called from the
    writer thread (``write_shards``)."""
    t = get_task(job.task)
    records: list[dict] = []

    def shard_done(s, rec):
        records.append(rec)
        if on_shard is not None:
            on_shard(s, rec)

    runner = job.sources.runner(t, job.params, job.backend, job.device, job.workers, job.batch_size,
                                FieldEncoder(t, job.pixels), batch_key=lambda item: item.index // job.per_shard,
                                jpeg_scaling=job.jpeg_scaling)
    items = (job.sources.plan(t, job.params, job.seed, i) for i in shard_indices(shards, job.per_shard, job.samples))
    try:
        write_shards(t, runner, items, job.out, job.per_shard, job.samples, job.seed, on_sample or (lambda: None),
                     shard_done, background)
    finally:
        runner.close()
    return records


# ---------------------------------------------------------------- shard numbers
def parse_shards(spec: str, total: int) -> list[int]:
    """Shard numbers of ``spec``: "a:b" (a to b-1), "a:" (a to the end), "n", comma-separated."""
    out: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?::(\d*))?", part)
        if m is None:
            raise PretextgenError(f"--shards {spec!r}: use A:B (A to B-1), A: or N, comma-separated")
        a = int(m.group(1))
        b = a + 1 if m.group(2) is None else (int(m.group(2)) if m.group(2) else total)
        if not a < b <= total:
            raise PretextgenError(f"--shards {spec!r}: this build has shards 0 to {total - 1} (--shards 0:{total})")
        out.update(range(a, b))
    return sorted(out)


def format_shards(numbers) -> str:
    """The shortest ``--shards`` spec of ``numbers`` ([4, 7, 8, 9] -> "4,7:10")."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1]:
            runs[-1][1] = n + 1
        else:
            runs.append([n, n + 1])
    return ",".join(str(a) if b == a + 1 else f"{a}:{b}" for a, b in runs)


# ---------------------------------------------------------------- partial manifests and merge
def part_name(num_workers: int, worker_index: int, shards: str | None) -> str:
    """A worker's partial manifest: one per (worker, shard selection), so reruns of a range never
    overwrite another worker's records."""
    sel = "" if shards is None else "-shards-" + hashlib.sha256(shards.encode()).hexdigest()[:8]
    return f"{PARTS_DIR}/worker-{worker_index:05d}-of-{num_workers:05d}{sel}.json"


def part_info(backend: str) -> dict:
    """What a part records about the machine that made it: versions decide bytes."""
    return {"version": __version__, "libraries": get_backend(backend).libraries(), "host": platform.node()}


def _records_of(out: Path) -> list[tuple[str, dict, dict]]:
    """(where, info, record) of every shard record in ``out``: manifest.json's and each part's."""
    found = []
    manifest = out / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        found += [("manifest.json", m, r) for r in m.get("shards", [])]
    for part in sorted((out / PARTS_DIR).glob("*.json")):
        p = json.loads(part.read_text())
        found += [(f"{PARTS_DIR}/{part.name}", p, r) for r in p.get("shards", [])]
    return found


def collect_records(out: Path, header: dict, numbers=None) -> tuple[dict[int, dict], dict[int, str], list[tuple[int, str]]]:
    """Records whose shard file is on disk with their sha256, among the shards ``numbers`` (None: all):
    (good {number: record}, {number: where} of shards recorded only by parts made with other versions,
    [(number, why)] missing or damaged)."""
    out = Path(out)
    numbers = range(header["shards_total"]) if numbers is None else numbers
    wanted = set(numbers)
    good: dict[int, dict] = {}
    foreign: dict[int, str] = {}
    hashes: dict[str, str] = {}
    for where, info, rec in _records_of(out):
        s = rec["number"]
        if s in good or s not in wanted:
            continue
        path = out / rec["name"]
        if rec["name"] not in hashes and path.exists():
            hashes[rec["name"]] = file_sha256(path)
        if hashes.get(rec["name"]) != rec["sha256"]:
            continue
        if same_versions(info, header):
            good[s] = rec
            foreign.pop(s, None)
        else:
            foreign.setdefault(s, where)
    t = get_task(header["task"])
    bad = []
    for s in sorted(wanted):
        if s in good or s in foreign:
            continue
        name = shard_name(t.name, s)
        bad.append((s, f"{name}: " + ("sha256 differs from its record, or no record" if (out / name).exists()
                                      else "missing")))
    return good, foreign, bad


def finish_manifest(header: dict, records: dict[int, dict]) -> dict:
    """The complete manifest: the header, every shard's record, the label histogram and the plans drawn
    again, summed over shards."""
    total: Counter = Counter()
    refused: Counter = Counter()
    for rec in records.values():
        total.update({int(k): v for k, v in rec["label_histogram"].items()})
        refused.update(rec.get("rejected_plans", {}))
    manifest = {**header, "shards": [records[k] for k in sorted(records)],
                "label_histogram": {str(k): total[k] for k in sorted(total)}, "complete": True}
    if refused:  # plans drawn again because they were not worth a sample, by reason
        manifest["rejected_plans"] = dict(sorted(refused.items()))
    return manifest


def rebuild_command(out: Path, numbers) -> str:
    import shlex

    return f"pretextgen build --out {shlex.quote(str(out))} --shards {format_shards(numbers)}"


def merge(out) -> dict:
    """``pretextgen merge``: check every shard of the plan in ``out`` against its record (sha256) and
    the versions of the part that made it, and write the one ``manifest.json``. Refuses, naming the
    shards and the command that rebuilds them, when any is missing, damaged or made with other
    library versions than the plan's."""
    out = Path(out)
    header = {k: v for k, v in read_header(out).items() if k != "listing"}
    good, foreign, bad = collect_records(out, header)
    problems = []
    if bad:
        lines = [why for _, why in bad[:8]] + ([f"... {len(bad) - 8} more"] if len(bad) > 8 else [])
        problems.append(f"{len(bad)} of {header['shards_total']} shards missing or damaged ({'; '.join(lines)})")
    if foreign:
        parts = sorted(set(foreign.values()))
        problems.append(f"{len(foreign)} shards come only from {', '.join(parts)}, made with other versions than the "
                        f"plan's (pretextgen {header['version']}, {json.dumps(header['libraries'])}): their bytes may "
                        "differ from a build on the plan's versions")
    if problems:
        numbers = sorted([s for s, _ in bad] + list(foreign))
        raise PretextgenError(f"cannot merge {out}: " + "; ".join(problems)
                              + f". Rebuild them with the plan's versions: {rebuild_command(out, numbers)}")
    manifest = finish_manifest(header, good)
    write_json(out / "manifest.json", manifest)
    return manifest


def stale_temporaries(out: Path) -> list[Path]:
    """Temporary files that attempts which died left behind (names are per attempt: ``shards.write_shard``)."""
    return sorted(Path(out).glob("*.tmp"))


def environment_position(env=os.environ) -> tuple[int, int, str] | None:
    """(worker_index, num_workers, where from) of this process in a job array: Slurm's
    SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN (over its step) of SLURM_ARRAY_TASK_COUNT, else torchrun's
    RANK of WORLD_SIZE; None outside one (or in an array of one)."""
    try:
        if "SLURM_ARRAY_TASK_ID" in env and int(env.get("SLURM_ARRAY_TASK_COUNT", "1")) > 1:
            step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))  # --array=0-30:2 counts 0, 2, 4...
            return ((int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))) // step,
                    int(env["SLURM_ARRAY_TASK_COUNT"]), "SLURM_ARRAY_TASK_ID")
        if int(env.get("WORLD_SIZE", "1")) > 1 and "RANK" in env:
            return int(env["RANK"]), int(env["WORLD_SIZE"]), "RANK/WORLD_SIZE"
    except ValueError:
        raise PretextgenError("SLURM_ARRAY_TASK_* or RANK/WORLD_SIZE is not a number; pass --num-workers and "
                              "--worker-index") from None
    return None
