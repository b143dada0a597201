"""``pretextgen build --ray [ADDRESS]``: one Ray task per shard (``pip install pretextgen[ray]``).

Each task runs ``jobs.make_shards`` for one shard from the plan files in the output folder (the
listing never travels through Ray) and writes the shard's bytes to that folder itself, which every
node must see (a shared file system); only the shard's record comes back. The driver rewrites the
manifest after each shard and shows progress that tasks report every few samples.

Ray retries a task whose worker process died (``max_retries``) and one that raised ``OSError`` (a
network file system's hiccup), not a Python error in our code: rerunning it would fail again.
A retried attempt can race one that Ray thinks is dead: temporary names are per attempt
(``shards.temporary_name``), and both write the same bytes.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from .errors import PretextgenError
from .jobs import PLAN_FILE, BuildOptions, Plan, make_shards, read_plan

log = logging.getLogger("pretextgen")
MAX_RETRIES = 3
REPORT_EVERY = 16  # samples between progress reports of a task
# Fault injection for the retry test: "SHARD:SAMPLES:MARKER" makes the first attempt at SHARD exit
# hard after SAMPLES samples (MARKER, a file, records that it did).
DIE_ONCE_ENV = "PRETEXTGEN_RAY_DIE_ONCE"

_PLANS: dict = {}  # per Ray worker process: the plan of each output folder, read once


def _plan_of(out: str, workers: int) -> Plan:
    """The plan in ``out``, its sources under the plan's absolute root (every node sees it there)."""
    path = Path(out) / PLAN_FILE
    key = (out, workers, path.stat().st_mtime_ns)
    if key not in _PLANS:
        _PLANS.clear()
        _PLANS[key] = read_plan(Path(out), None, workers)
    return _PLANS[key]


def _die_once(shard: int):
    """The fault-injection check of ``DIE_ONCE_ENV``: a function of the samples made so far."""
    spec = os.environ.get(DIE_ONCE_ENV)
    if not spec:
        return None
    target, after, marker = spec.split(":", 2)
    if int(target) != shard or Path(marker).exists():
        return None

    def check(made: int):
        if made == int(after):
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)  # a dead worker process, as after a kill -9 or an out-of-memory kill
    return check


def shard_task(out: str, workers: int, shard: int, progress) -> dict:
    """One Ray task: make ``shard`` of the plan in ``out``; returns its record."""
    plan = _plan_of(out, workers)
    die = _die_once(shard)
    made = [0]

    def on_sample():
        made[0] += 1
        if die is not None:
            die(made[0])
        if made[0] % REPORT_EVERY == 0 and progress is not None:
            progress.report.remote(shard, made[0])

    return make_shards(plan.job, [shard], on_sample)[0]


class _Progress:
    """An actor that holds the samples each shard's current attempt has made."""

    def __init__(self):
        self.made: dict[int, int] = {}

    def report(self, shard: int, made: int) -> None:
        self.made[shard] = made

    def take(self) -> dict[int, int]:
        return dict(self.made)


def _connect(address: str) -> bool:
    """Connect to Ray, or start a local instance for this build; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address == "local":
        # A private instance: loopback only, no dashboard, a small object store (only records travel).
        ray.init(include_dashboard=False, object_store_memory=100 * 2**20, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
        return True
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    return False


def run_on_ray(plan: Plan, todo: list[int], o: BuildOptions, on_sample, on_shard) -> None:
    """Make ``todo`` as Ray tasks; ``on_shard(number, record)`` as each completes (the caller rewrites
    the manifest), ``on_sample(n)`` as tasks report progress."""
    try:
        import ray
    except ImportError:
        raise PretextgenError("--ray needs Ray: pip install 'pretextgen[ray]'") from None
    if not todo:
        return
    started = _connect(o.ray)
    try:
        threads = max(1, math.floor(o.ray_cpus))
        options = {"num_cpus": o.ray_cpus, "max_retries": MAX_RETRIES, "retry_exceptions": [OSError]}
        if plan.job.device == "gpu":
            options["num_gpus"] = o.ray_gpus
        task = ray.remote(shard_task).options(**options)
        progress = ray.remote(_Progress).options(num_cpus=0).remote()
        pending = {task.remote(str(Path(plan.job.out).resolve()), threads, s, progress): s for s in todo}
        shown: dict[int, int] = {}

        def show(shard: int, made: int):
            delta = made - shown.get(shard, 0)
            if delta > 0:
                shown[shard] = made
                on_sample(delta)

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5, fetch_local=True)
            for shard, made in ray.get(progress.take.remote()).items():
                if shard in pending.values():
                    show(shard, made)
            for ref in ready:
                shard = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise PretextgenError(f"shard {shard} failed on Ray: {str(e).strip().splitlines()[-1][:300]} "
                                          f"(lost workers are retried {MAX_RETRIES} times, Python errors not); "
                                          "rerun with --resume") from None
                show(shard, rec["samples"])
                on_shard(shard, rec)
    finally:
        if started:
            ray.shutdown()
