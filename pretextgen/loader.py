"""Streaming loaders for training scripts: built shards, or live generation without shards.

``make_loader(OUT_DIR, batch_size=64, num_workers=2)`` is all a training loop needs::

    loader = make_loader("out/jigsaw", batch_size=64, num_workers=2)
    loader.load_state_dict(ckpt["loader"])          # optional: continue mid-epoch
    for batch in loader:                             # batch["tiles"]: uint8 (B, 9, 3, 64, 64)
        ...; ckpt["loader"] = loader.state_dict()    # batch["label"]: int64 (B,)

Fields: image-like ones (images, tile stacks, ab, soft bins and weights) come out channels first;
class ids and indices (ab_bins, L_bins, cluster ids, MAE ids) come out int64 (``collate``).

How one epoch is cut (``epoch_slots``): the shards are put in an order drawn from (seed, epoch); the
concatenated stream of samples is split into one contiguous range per rank, then per DataLoader
worker; each worker reads only its range (sequential tar reads) through a shuffle buffer whose
randomness comes from (seed, epoch, rank, worker). Every sample is seen exactly once per epoch across
all ranks and workers. Uneven ends (``uneven``): ``keep`` (default) gives ranks sample counts that
differ by at most one (nothing dropped or repeated; a DDP loop then needs ``join``), ``drop`` drops
the last ``samples % world_size`` samples of the epoch's stream, ``pad`` repeats its first ones
so that every rank gets ``ceil(samples / world_size)``.

Resume: the shuffle buffer shuffles *positions*, so the state saved with a checkpoint is only the
epoch, the number of positions consumed from each worker (delivered, or skipped as damaged) and the
worker whose batch comes next; a restored loader replays the positions and reads only the samples
not yet consumed.

The loader does not hash shards (that would read each twice): ``pretextgen verify`` is the integrity
check (every shard's sha256 against the manifest). A damaged shard the loader meets (truncated tar,
missing member, undecodable member) raises ``DamagedShardError``
naming the shard and the member; with ``skip_damaged=True`` the sample is skipped, counted in
``loader.skipped`` and logged: never a silent drop.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import PretextgenError
from .device_finish import dali_to_torch
from .shards import Damage, decode_member, read_manifest, read_segment, sample_key


log = logging.getLogger("pretextgen.loader")
_ORDER_TAG = 0x10AD  # separates the loader's streams from the builder's per-sample streams
STATE_VERSION = 1
UNEVEN = ("keep", "drop", "pad")


class DamagedShardError(PretextgenError):
    """A shard cannot give a sample: the message names the shard and the member."""


# ---------------------------------------------------------------- the epoch's layout (pure)
def shard_order(n_shards: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, _ORDER_TAG, epoch]).permutation(n_shards)


def rank_range(n: int, rank: int, world_size: int, uneven: str = "keep") -> tuple[int, int]:
    """[start, stop) of rank's share of an epoch's stream of n samples; stop may exceed n (``pad``:
    positions wrap to the start of the stream)."""
    if uneven == "keep":
        return rank * n // world_size, (rank + 1) * n // world_size
    if uneven == "drop":
        per = n // world_size
        return rank * per, (rank + 1) * per
    if uneven == "pad":
        per = -(-n // world_size)
        return rank * per, (rank + 1) * per
    raise PretextgenError(f"uneven must be one of {', '.join(UNEVEN)}, not {uneven!r}")


def worker_range(start: int, stop: int, worker: int, workers: int) -> tuple[int, int]:
    n = stop - start
    return start + worker * n // workers, start + (worker + 1) * n // workers


def epoch_slots(sizes: list[int], seed: int, epoch: int, rank: int, world_size: int, worker: int,
                workers: int, uneven: str = "keep") -> list[tuple[int, int, int]]:
    """The segments ``(shard number, first, stop)`` (sample positions inside the shard) that this
    rank's worker reads this epoch, in reading order."""
    order = shard_order(len(sizes), seed, epoch)
    starts = np.concatenate([[0], np.cumsum([sizes[s] for s in order])])
    n = int(starts[-1])
    lo, hi = worker_range(*rank_range(n, rank, world_size, uneven), worker, workers)
    out = []
    pos = lo
    while pos < hi:
        p = pos % n
        k = int(np.searchsorted(starts, p, side="right")) - 1
        take = min(hi - pos, int(starts[k + 1]) - p)
        first = p - int(starts[k])
        out.append((int(order[k]), first, first + take))
        pos += take
    return out


class BufferShuffle:
    """Buffered shuffle of the positions 0..n-1 (what a shuffle buffer of ``size`` samples outputs
    when fed them in order). It shuffles positions, not data: replaying it is how a resumed loader
    knows which samples are still due. ``buf`` and ``next_in`` describe the state after any output."""

    def __init__(self, n: int, size: int, rng: np.random.Generator):
        self.n, self.size, self.rng = n, max(1, size), rng
        self.buf: list[int] = []
        self.next_in = 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        while self.next_in < self.n and len(self.buf) < self.size:
            self.buf.append(self.next_in)
            self.next_in += 1
        if not self.buf:
            raise StopIteration
        j = int(self.rng.integers(len(self.buf)))
        self.buf[j], self.buf[-1] = self.buf[-1], self.buf[j]
        return self.buf.pop()


def decode_sample(members: dict, shard: str, key: str) -> dict:
    """{suffix: bytes} -> {field name: array, "label": int, "json": dict}; errors name the member."""
    out = {}
    for suffix, data in members.items():
        try:
            value = decode_member(suffix, data)
        except Exception as e:  # noqa: BLE001 - any decoder failure means a damaged member
            raise DamagedShardError(f"shard {shard}: member {key}.{suffix} cannot be decoded ({e})") from None
        if value is None:
            raise DamagedShardError(f"shard {shard}: member {key}.{suffix} cannot be decoded")
        name = suffix.rsplit(".", 1)[0]
        out["label" if name == "cls" else name] = value
    return out


def _distributed_defaults(rank, world_size) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() if rank is None else rank, dist.get_world_size() if world_size is None else world_size
    except ImportError:
        pass
    return rank or 0, world_size or 1


def _worker() -> tuple[int, int]:
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _threads() -> int:
    """Threads for a live backend: every core in the training process itself, one in each
    DataLoader worker process (the workers already share the cores)."""
    from .parallel import default_workers

    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return default_workers()
    return default_workers() if get_worker_info() is None else 1


def _slot(dataset) -> tuple[int, int, int, int]:
    """(slot, slots, epoch, samples to skip) of the DataLoader worker running this. On a resume the
    Loader rotates workers to slots so that DataLoader's round robin, which starts at worker 0,
    continues with the slot that was next (``worker_shift``): the order stays exactly the same."""
    worker, workers = _worker()
    slot = (worker + dataset.worker_shift) % workers
    skip = dataset.resume_from[slot] if dataset.resume_from else 0
    return slot, workers, dataset.epoch, skip


def _torch_iterable():
    try:
        from torch.utils.data import IterableDataset
    except ImportError:  # `pretextgen verify` reads shards with this module and needs no torch
        return object
    return IterableDataset


class ShardDataset(_torch_iterable()):
    """Samples of a built ``OUT_DIR`` as dicts of arrays: the task's fields, ``label``, ``index``
    (the global sample index) and ``json`` (the plan); see the module docstring for the split."""

    def __init__(self, out_dir, shuffle_buffer: int = 1000, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, uneven: str = "keep", skip_damaged: bool = False):
        out = Path(out_dir)
        m = read_manifest(out)
        if not m.get("complete"):
            raise PretextgenError(f"{out}: the build is incomplete; finish it with `pretextgen build ... --resume`")
        self.out, self.manifest = out, m
        self.shards = [(out / r["name"], r["first_index"], r["samples"]) for r in m["shards"]]
        self.required = list(m["fields"])
        self.rank, self.world_size = _distributed_defaults(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise PretextgenError(f"rank {self.rank} is outside 0..world_size-1 = {self.world_size - 1}")
        rank_range(1, 0, 1, uneven)  # validates the name
        self.shuffle_buffer, self.seed, self.uneven, self.skip_damaged = shuffle_buffer, seed, uneven, skip_damaged
        self.epoch = 0
        self.resume_from: list[int] | None = None  # samples already consumed, per worker slot
        self.worker_shift = 0

    @property
    def total(self) -> int:
        return sum(s[2] for s in self.shards)

    def rank_samples(self) -> int:
        """How many samples this rank sees per epoch (under the ``uneven`` policy)."""
        lo, hi = rank_range(self.total, self.rank, self.world_size, self.uneven)
        return hi - lo

    def stream(self, worker: int = 0, workers: int = 1, epoch: int | None = None, skip: int = 0) -> Iterator[dict]:
        """This worker's samples for ``epoch``, after its first ``skip`` positions (already consumed:
        delivered, or skipped as damaged)."""
        epoch = self.epoch if epoch is None else epoch
        segs = epoch_slots([s[2] for s in self.shards], self.seed, epoch, self.rank, self.world_size,
                           worker, workers, self.uneven)
        n = sum(hi - lo for _, lo, hi in segs)
        order = BufferShuffle(n, self.shuffle_buffer, np.random.default_rng([self.seed, _ORDER_TAG, epoch, self.rank, worker]))
        for _ in range(min(skip, n)):
            next(order)
        pending, fresh_from = set(order.buf), order.next_in  # inputs still due

        def want(i):
            return i >= fresh_from or i in pending

        def inputs():
            base = 0
            for s, lo, hi in segs:
                path, first, _ = self.shards[s]
                for p, item in read_segment(path, first, lo, hi, self.required, lambda p, b=base - lo: want(b + p)):
                    yield base + p - lo, s, p, item
                base += hi - lo

        reader = inputs()
        held: dict = {}
        skipped = 0
        for i in order:
            while i not in held:
                j, s, p, item = next(reader)
                if want(j):
                    held[j] = (s, p, item)
            s, p, item = held.pop(i)
            path, first, _ = self.shards[s]
            key = sample_key(first + p)
            if isinstance(item, Damage):
                if not self.skip_damaged:
                    raise DamagedShardError(item.message)
                log.warning("skipped: %s", item.message)
                skipped += 1
                continue
            try:
                sample = decode_sample(item, path.name, key)
            except DamagedShardError as e:
                if not self.skip_damaged:
                    raise
                log.warning("skipped: %s", e)
                skipped += 1
                continue
            sample.update(index=first + p, _worker=worker, _skipped=skipped)
            skipped = 0
            yield sample
        if skipped:  # damaged samples at the very end still reach the count
            yield {"_worker": worker, "_skipped": skipped, "_empty": True}

    def __iter__(self):
        return self.stream(*_slot(self))


class LiveDataset(_torch_iterable()):
    """Samples generated on the fly by a backend, without shards. Epoch e yields the samples
    ``e * samples .. (e + 1) * samples - 1``, each from (seed, index) exactly as ``build`` would make
    them, so epoch 0 equals ``pretextgen build --samples samples --seed seed``; the indices are split
    across ranks and workers like shards are (``uneven`` policy included)."""

    def __init__(self, task: str, samples: int, source=None, seed: int = 0, config=None, overrides=None,
                 backend: str = "opencv", device: str = "cpu", rank: int | None = None,
                 world_size: int | None = None, uneven: str = "keep", batch_size: int = 32):
        from .backends import resolve
        from .config import load_params
        from .registry import get_task, source_kind
        from .sources import default_source, list_files, scan

        self.task = get_task(task)
        if not source_kind(self.task.input).live:
            raise PretextgenError(f"live mode reads images; task {task!r} reads {self.task.input}s: build shards instead")
        self.params = load_params(self.task, config, overrides)
        self.backend, self.device = resolve(backend, device)
        if source is None:
            self.root, files = default_source()
        else:
            self.root = Path(source)
            files = list_files(self.root)
        self.sources, self.skipped_sources = scan(self.root, files, self.task.min_side(self.params))
        if not self.sources:
            raise PretextgenError(f"no usable image in {source or 'skimage:data'}")
        self.samples, self.seed, self.batch_size = samples, seed, batch_size
        self.rank, self.world_size = _distributed_defaults(rank, world_size)
        rank_range(1, 0, 1, uneven)
        self.uneven = uneven
        self.epoch = 0
        self.resume_from: list[int] | None = None
        self.worker_shift = 0
        self.total = samples

    def rank_samples(self) -> int:
        lo, hi = rank_range(self.samples, self.rank, self.world_size, self.uneven)
        return hi - lo

    def indices(self, worker: int, workers: int, epoch: int, skip: int = 0) -> Iterator[int]:
        """Global sample indices of this worker in ``epoch``, after ``skip`` (``pad`` wraps around)."""
        lo, hi = worker_range(*rank_range(self.samples, self.rank, self.world_size, self.uneven), worker, workers)
        return (epoch * self.samples + p % self.samples for p in range(lo + skip, hi))

    def stream(self, worker: int = 0, workers: int = 1, epoch: int | None = None, skip: int = 0) -> Iterator[dict]:
        from .backends import make_backend
        from .plan import plan_sample

        epoch = self.epoch if epoch is None else epoch
        items = (plan_sample(self.task, self.params, self.sources, self.seed, i, self.root)
                 for i in self.indices(worker, workers, epoch, skip))
        if self.device == "gpu" and self.task.torch_finish is not None:
            yield from self.stream_in_torch(items, worker)
            return
        runner = make_backend(self.backend, self.device, self.task, self.params, self.root, _threads(),
                              self.batch_size, encode=False)
        try:
            for item, fields in runner.run(items):
                yield {**fields, "label": int(item.plan["label"]), "index": item.index, "json": item.plan,
                       "_worker": worker, "_skipped": 0}
        finally:
            runner.close()

    def stream_in_torch(self, items, worker: int = 0) -> Iterator[dict]:
        """DALI's views handed to PyTorch through DALI's plugin and finished by the task's
        ``Task.torch_finish``: on the GPU, samples are CUDA tensors and never visit the host. The same code
        runs on DALI's CPU device (the tests use that)."""
        from .backends import DaliBackend

        finish = self.task.torch_finish
        runner = DaliBackend(self.task, self.params, self.root, self.device, self.batch_size, encode=False)
        try:
            for batch, outs in runner.run_views(items):
                views = [dali_to_torch(o) for o in outs]  # (B, H, W, C) per view, on DALI's device
                fields = finish(self.params, views, [item.plan for item in batch])
                for k, item in enumerate(batch):
                    yield {**{name: f[k] for name, f in fields.items()}, "label": int(item.plan["label"]),
                           "index": item.index, "json": item.plan, "_worker": worker, "_skipped": 0}
        finally:
            runner.close()

    def __iter__(self):
        return self.stream(*_slot(self))


# ---------------------------------------------------------------- collation and the loader
def _image_like(a: np.ndarray) -> bool:
    return a.ndim >= 3 and a.shape[-1] in (1, 2, 3) and min(a.shape[-3:-1]) >= 8


def collate(samples: list[dict], channels_first: bool = True, fields: dict | None = None) -> dict:
    """Stack a worker's samples: arrays -> tensors, ``label``/``index`` -> int64, ``json`` -> list of
    plans. The rule for every field (``fields``: name -> registry.Field): one declared ``channels``
    (stored ``...xHxWxC``) comes out ``...xCxHxW`` when ``channels_first``; one declared ``ids`` (class
    ids, indices) comes out int64. Without ``fields``, arrays shaped like images are moved."""
    import torch

    def layout(name, first):
        spec = (fields or {}).get(name)
        return (spec.channels, spec.ids) if spec is not None else (_image_like(first), False)

    samples_ = [s for s in samples if not s.get("_empty")]
    out: dict = {"_worker": samples[0]["_worker"], "_skipped": sum(s["_skipped"] for s in samples)}
    if not samples_:
        out["_empty"] = True
        return out
    for name, first in samples_[0].items():
        if name.startswith("_"):
            continue
        values = [s[name] for s in samples_]
        if name in ("label", "index"):
            out[name] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, torch.Tensor):  # live GPU samples: stay on their device
            channels, ids = layout(name, first)
            a = torch.stack(values)
            a = a.movedim(-1, -3).contiguous() if channels_first and channels else a
            out[name] = a.long() if ids else a
        elif isinstance(first, np.ndarray):
            channels, ids = layout(name, first)
            a = np.stack(values)
            if channels_first and channels:
                a = np.moveaxis(a, -1, -3)
            out[name] = torch.from_numpy(np.ascontiguousarray(a, np.int64 if ids else None))
        else:
            out[name] = values
    return out


class Loader:
    """A ``torch.utils.data.DataLoader`` over a ShardDataset or LiveDataset that counts what the
    training loop consumed, so that ``state_dict()`` / ``load_state_dict()`` resume mid-epoch exactly.
    Each full pass advances the epoch. Batches come from one worker each (DataLoader collates in the
    worker); the last batch of each worker may be smaller (``drop_last`` would break exactly-once)."""

    def __init__(self, dataset, batch_size: int = 64, num_workers: int = 0, channels_first: bool = True,
                 **dataloader_kwargs):
        if dataloader_kwargs.get("persistent_workers"):
            # workers keep their copy of the dataset: the next epoch and a resume would not reach them
            raise PretextgenError("persistent_workers is not supported: workers restart each epoch to get its order")
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.channels_first, self.kwargs = channels_first, dataloader_kwargs
        self.consumed = [0] * max(1, num_workers)
        self.next_worker = 0  # the slot whose batch comes next in DataLoader's round robin
        self.skipped = 0

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch
        self.consumed = [0] * max(1, self.num_workers)
        self.next_worker = 0

    def dataloader(self):
        from functools import partial

        from torch.utils.data import DataLoader

        from .registry import get_task

        task = getattr(self.dataset, "task", None)
        if task is None and hasattr(self.dataset, "manifest"):
            task = get_task(self.dataset.manifest["task"])
        fields = {f.name: f for f in task.fields} if task is not None else None
        return DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=partial(collate, channels_first=self.channels_first, fields=fields), **self.kwargs)

    def __iter__(self):
        self.dataset.resume_from = list(self.consumed) if any(self.consumed) else None
        self.dataset.worker_shift = self.next_worker
        try:
            for batch in _clean_worker_errors(self.dataloader()):
                damaged = batch.pop("_skipped")
                w = batch.pop("_worker")
                self.next_worker = (w + 1) % len(self.consumed)
                self.skipped += damaged
                # positions consumed: damaged ones too, so that a resume lines up with the order
                self.consumed[w] += damaged
                if batch.pop("_empty", False):
                    continue
                self.consumed[w] += len(batch["label"])
                yield batch
        finally:
            self.dataset.resume_from, self.dataset.worker_shift = None, 0
        self.set_epoch(self.dataset.epoch + 1)

    def __len__(self) -> int:
        """Batches per epoch for this rank (exact: each worker's last batch may be partial)."""
        n = self.dataset.rank_samples()
        k = max(1, self.num_workers)
        return sum(-(-(n * (w + 1) // k - n * w // k) // self.batch_size) for w in range(k))

    def state_dict(self) -> dict:
        d = self.dataset
        return {"version": STATE_VERSION, "epoch": d.epoch, "consumed": list(self.consumed),
                "next_worker": self.next_worker, "seed": d.seed,
                "num_workers": self.num_workers, "rank": d.rank, "world_size": d.world_size,
                "uneven": d.uneven, "samples": d.total, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        d = self.dataset
        now = {"seed": d.seed, "num_workers": self.num_workers, "rank": d.rank, "world_size": d.world_size,
               "uneven": d.uneven, "samples": d.total}
        diff = [f"{k}={state.get(k)!r} (now {v!r})" for k, v in now.items() if state.get(k) != v]
        if diff:
            raise PretextgenError("loader state was saved with other settings: " + ", ".join(diff)
                                  + "; resume with the same ones")
        d.epoch = state["epoch"]
        self.consumed = list(state["consumed"])
        self.next_worker = state["next_worker"]
        self.skipped = state.get("skipped", 0)


def _clean_worker_errors(it):
    """DataLoader workers re-raise errors with their traceback in the message; keep our one line."""
    try:
        yield from it
    except DamagedShardError as e:
        text = str(e)
        marker = "DamagedShardError: "
        raise DamagedShardError(text.rsplit(marker, 1)[-1].strip() if marker in text else text) from None


def make_loader(out_dir, batch_size: int = 64, num_workers: int = 2, shuffle_buffer: int = 1000, seed: int = 0,
                rank: int | None = None, world_size: int | None = None, uneven: str = "keep",
                skip_damaged: bool = False, channels_first: bool = True, **dataloader_kwargs) -> Loader:
    """A ready loader over the shards in ``out_dir`` (rank and world size default to torch.distributed's)."""
    ds = ShardDataset(out_dir, shuffle_buffer, seed, rank, world_size, uneven, skip_damaged)
    return Loader(ds, batch_size, num_workers, channels_first, **dataloader_kwargs)


def make_live_loader(task: str, samples: int, batch_size: int = 64, num_workers: int = 0, source=None,
                     seed: int = 0, backend: str = "opencv", device: str = "cpu", rank=None, world_size=None,
                     config=None, overrides=None, channels_first: bool = True, **dataloader_kwargs) -> Loader:
    """A loader that generates ``samples`` samples per epoch on the fly (no shards)."""
    ds = LiveDataset(task, samples, source, seed, config, overrides, backend, device, rank, world_size)
    return Loader(ds, batch_size, num_workers, channels_first, **dataloader_kwargs)
