"""``pretextgen build``: the front door of a build, and where it runs.

A build is a plan step and independent shard jobs (``jobs``: ``make_plan``, ``make_shards``); here
they run
- in this process or in N processes (``_build_local``; resumable: complete shards are kept,
  sha256-checked, the rest redone),
- as one worker of a job array (``_build_worker``: worker k of W makes every W-th shard from the plan
  files in the output folder and writes its partial manifest; ``pretextgen merge`` joins them),
- or as one Ray task per shard (``ray_build``).
Every way makes the same bytes: sample i is planned from (seed, i) (``plan``), executed by a backend
(``backends``) and stored (``shards``).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .backends import get_backend
from .config import load_params, params_to_dict
from .errors import PretextgenError
from .jobs import (IDENTITY, PLAN_FILE, BuildOptions, ShardJob, collect_records, finish_manifest, identity_diff,
                   make_plan, make_shards, merge, parse_shards, part_info, part_name, read_header, read_plan,
                   same_versions, samples_per_shard, stale_temporaries, write_plan)
from .progress import Progress
from .registry import get_task, source_kind
from .shards import read_manifest, write_json

log = logging.getLogger("pretextgen")
PLAN_WAIT_S = 3600  # how long worker k > 0 waits for worker 0's plan before it gives up

__all__ = ["BuildOptions", "build", "plan", "merge"]


def _build_part(job: ShardJob, shards: list[int], parent: int, queue) -> None:
    """``make_shards`` in a process of a ``processes > 1`` build, reporting ("samples", n),
    ("shard", number, record), then ("done",) or ("error", text) through ``queue``."""
    try:
        made = [0]

        def on_sample():
            # ProcessLookupError when the build was killed (kill -9): stop before writing more shards
            # that a --resume would write again.
            os.kill(parent, 0)
            made[0] += 1
            if made[0] == 64:
                queue.put(("samples", made[0]))
                made[0] = 0

        def on_shard(s, rec):  # from the writer thread: the sample count is the main thread's
            queue.put(("shard", s, rec))

        make_shards(job, shards, on_sample, on_shard)
        queue.put(("samples", made[0]))
        queue.put(("done",))
    except ProcessLookupError:
        pass
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _run_processes(parts: list[tuple[ShardJob, list[int]]], on_sample, on_shard) -> None:
    """Run each (job, shards) in its own process (forkserver) and relay their reports until all are done."""
    import queue as queue_mod

    from .parallel import mp_context, start_processes

    ctx = mp_context()
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_part, args=(job, shards, os.getpid(), q), daemon=True) for job, shards in parts]
    start_processes(procs)
    running = len(procs)
    try:
        while running:
            try:
                msg = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise PretextgenError(f"a build process died (exit code {dead[0].exitcode}); "
                                          "rerun with --resume to continue") from None
                continue
            if msg[0] == "samples":
                on_sample(msg[1])
            elif msg[0] == "shard":
                on_shard(msg[1], msg[2])
            elif msg[0] == "done":
                running -= 1
            else:
                raise PretextgenError(f"a build process failed: {msg[1]}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


@contextmanager
def _cleaned_on_failure(out_path: Path):
    """A build that fails before its first shard leaves ``out_path`` as it was: removed if it made it,
    emptied if it was empty."""
    made = not out_path.exists()
    empty = made or (out_path.is_dir() and not any(out_path.iterdir()))
    try:
        yield
    except BaseException:
        if empty and out_path.is_dir() and not any(out_path.glob("*.tar")):
            if made:
                shutil.rmtree(out_path, ignore_errors=True)
            else:
                for p in out_path.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def build(task: str | None, out, source=None, options: BuildOptions | None = None, **option_values) -> dict:
    """Build ``options.samples`` samples of ``task`` from ``source`` (a folder, a file listing paths or
    a glob; None: the task's kind's bundled default) into shards under ``out``; returns the manifest.
    Options come as a ``BuildOptions`` or as its fields by name (``samples=1000, backend="opencv"``).

    With ``num_workers``/``worker_index`` or ``shards``, makes those shards only and returns this
    worker's partial manifest (then ``merge``); ``task`` may be None when ``out`` holds a plan.
    A build that fails before any shard is complete leaves the output folder as it was (removed if
    the build made it, emptied if it was empty): it never blocks the same command again."""
    options = dataclasses.replace(options or BuildOptions(), **option_values)
    out_path = Path(out)
    if options.num_workers is not None or options.shards is not None or task is None:
        options.check()
        return _build_worker(task, out_path, source, options)
    with _cleaned_on_failure(out_path):
        return _build_local(task, out_path, source, options)


build.__signature__ = inspect.Signature(  # help(build) lists every option
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for n, d in
     (("task", inspect.Parameter.empty), ("out", inspect.Parameter.empty), ("source", None), ("options", None))]
    + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
       for f in dataclasses.fields(BuildOptions)])


def plan(task: str, out, source=None, options: BuildOptions | None = None, **option_values) -> dict:
    """The plan step alone (``pretextgen plan-sources``): list and scan ``source``, run the task's own
    pass, and write ``plan.json`` and ``sources.json`` into ``out`` for job-array workers; returns the
    plan's header."""
    options = dataclasses.replace(options or BuildOptions(), **option_values)
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        what = f"a plan for {read_header(out_path)['task']}" if (out_path / PLAN_FILE).exists() else "files"
        raise PretextgenError(f"{out_path} already holds {what}; choose a new directory")
    with _cleaned_on_failure(out_path):
        out_path.mkdir(parents=True, exist_ok=True)
        planned = make_plan(task, out_path, source, options)
        write_plan(out_path, planned)
    return planned.header


def _build_local(task: str, out: Path, source, o: BuildOptions) -> dict:
    """The whole build here (in this process, N processes, or Ray tasks), resumable."""
    old = None
    if out.exists() and any(out.iterdir()):
        if not o.resume:
            raise PretextgenError(f"{out} is not empty; pass --resume to continue the build there, or choose a new directory")
        if (out / "manifest.json").exists():
            old = read_manifest(out)
        elif (out / PLAN_FILE).exists():  # a job-array build, finished here
            old = read_header(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in stale_temporaries(out):
        tmp.unlink()

    t0 = time.perf_counter()
    planned = make_plan(task, out, source, o)
    manifest, t = planned.header, get_task(planned.job.task)
    kept: dict[int, dict] = {}
    if old is not None:
        # A resumed build decodes as it started (builds of 0.2.0 decoded every JPEG at full size).
        manifest["jpeg_scaling"] = bool(old.get("jpeg_scaling", False))
        planned = dataclasses.replace(planned, job=dataclasses.replace(planned.job, jpeg_scaling=manifest["jpeg_scaling"]))
        diff = identity_diff(old, manifest)
        if diff:
            raise PretextgenError(f"--resume: {out} was built with different settings ({', '.join(diff)}); "
                                  "use the same command or a new directory")
        kept = collect_records(out, manifest)[0]
        log.info("resuming: %d of %d shards complete", len(kept), planned.shards)
    write_plan(out, planned)
    write_json(out / "manifest.json", {**manifest, "shards": [kept[k] for k in sorted(kept)]})

    todo = [s for s in range(planned.shards) if s not in kept]
    bar = Progress(o.samples, f"{t.name} ({manifest['backend']}/{manifest['device']})", "samples", o.progress)
    bar.update(sum(r["samples"] for r in kept.values()))
    records = dict(kept)

    def on_shard(s, rec):
        records[s] = rec
        write_json(out / "manifest.json", {**manifest, "shards": [records[k] for k in sorted(records)]})

    job, kind = planned.job, source_kind(t.input)
    processes = o.processes or get_backend(job.backend).default_processes(job.device, job.workers)
    processes = min(processes, kind.max_processes or processes, max(1, len(todo)))
    try:
        if o.ray is not None:
            from .ray_build import run_on_ray

            run_on_ray(planned, todo, o, bar.update, on_shard)
        elif processes > 1:
            job = dataclasses.replace(job, workers=max(1, job.workers // processes))
            _run_processes([(job, todo[k::processes]) for k in range(processes)], bar.update, on_shard)
        else:
            make_shards(job, todo, bar.update, on_shard)
    finally:
        bar.close()
    manifest = finish_manifest(manifest, records)
    write_json(out / "manifest.json", manifest)
    manifest["_seconds"] = time.perf_counter() - t0  # not stored: runs must stay byte-identical
    return manifest


def _check_command(header: dict, task: str, o: BuildOptions) -> None:
    """A worker's command must describe its plan's build: the plan's identity but its listing's digest
    (the listing is the plan's, not listed again here)."""
    t = get_task(task)
    kind = source_kind(t.input)
    params = load_params(t, o.config, o.overrides)
    backend, device = kind.resolve(o.backend, o.device)
    mine = {"task": t.name, "params": params_to_dict(params), "seed": o.seed, "samples": o.samples,
            "backend": backend, "device": device,
            "samples_per_shard": samples_per_shard(t, params, o.samples, o.shard_bytes),
            "batch_size": o.batch_size if get_backend(backend).batched else None, "pixels": o.pixels}
    diff = identity_diff(header, json.loads(json.dumps(mine)), [k for k in IDENTITY if k != "source_digest"])
    if diff:
        raise PretextgenError(f"this command differs from the plan in {PLAN_FILE} ({', '.join(diff)}): give every worker "
                              "the same command, or leave out --task to take everything from the plan")


def _wait_for_plan(out: Path, worker_index: int) -> None:
    path, waited = out / PLAN_FILE, 0.0
    while not path.exists():
        if waited == 0:
            log.warning("worker %d: waiting for worker 0 to write %s (or run pretextgen plan-sources first)",
                        worker_index, path)
        if waited >= PLAN_WAIT_S:
            raise PretextgenError(f"no {path} after {PLAN_WAIT_S} s: worker 0 plans the build (did it fail?); or run "
                                  "pretextgen plan-sources with the same options first")
        time.sleep(2.0)
        waited += 2.0


def _build_worker(task: str | None, out: Path, source, o: BuildOptions) -> dict:
    """One worker of a job array (``num_workers``/``worker_index``) or a ``shards`` range: make this
    worker's shards from the plan in ``out`` (worker 0 plans when none is there; the others wait for
    it) and write its partial manifest under ``parts/``. Reruns keep the worker's shards that are
    complete (sha256-checked)."""
    workers_n, k = o.num_workers or 1, o.worker_index or 0
    if not (out / PLAN_FILE).exists():
        if task is None:
            raise PretextgenError(f"{out} holds no {PLAN_FILE}: give --task (and the build's options), or plan it "
                                  "with pretextgen plan-sources")
        if k == 0:
            if out.exists() and any(out.iterdir()):
                raise PretextgenError(f"{out} is not empty and holds no {PLAN_FILE}: choose a new directory")
            with _cleaned_on_failure(out):
                out.mkdir(parents=True, exist_ok=True)
                write_plan(out, make_plan(task, out, source, o))
        else:
            _wait_for_plan(out, k)
    t0 = time.perf_counter()
    header = read_header(out)
    if task is not None:
        _check_command(header, task, o)
    info = part_info(header["backend"])
    if not same_versions(info, header):
        raise PretextgenError(f"this machine has pretextgen {info['version']} with {json.dumps(info['libraries'])}; the "
                              f"plan was made with {header['version']} and {json.dumps(header['libraries'])}: install "
                              "the plan's versions (bytes depend on them)")
    planned = read_plan(out, source, o.workers)
    numbers = parse_shards(o.shards, planned.shards) if o.shards is not None else list(range(planned.shards))
    mine = numbers[k::workers_n]
    name = part_name(workers_n, k, o.shards)
    path = out / name
    # A rerun keeps this worker's complete shards: any on disk with the sha256 of a record (its part's,
    # another part's, the manifest's) made with the plan's versions.
    records = collect_records(out, header, mine)[0]
    part = {**info, "worker_index": k, "num_workers": workers_n, "shards_selected": o.shards, "complete": False}
    path.parent.mkdir(exist_ok=True)

    def on_shard(s, rec):
        records[s] = rec
        write_json(path, {**part, "shards": [records[n] for n in sorted(records)]})

    todo = [s for s in mine if s not in records]
    t = get_task(header["task"])
    bar = Progress(sum(min(planned.job.per_shard, planned.job.samples - s * planned.job.per_shard) for s in mine),
                   f"{t.name} worker {k}/{workers_n}", "samples", o.progress)
    bar.update(sum(r["samples"] for r in records.values()))
    try:
        make_shards(planned.job, todo, bar.update, on_shard)
    finally:
        bar.close()
    part = {**part, "shards": [records[n] for n in sorted(records)], "complete": True}
    write_json(path, part)
    if workers_n == 1 and o.shards is None:  # the whole plan, made here: nothing else to wait for
        manifest = merge(out)
        manifest["_seconds"] = time.perf_counter() - t0
        return manifest
    return {**part, "part": name, "task": t.name, "shards_total": planned.shards, "_made": len(todo),
            "_seconds": time.perf_counter() - t0}
