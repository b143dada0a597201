"""The training loop shared by every task: ``pretextgen train`` and ``pretextgen.train(...)``.

Data: a build folder (``data``: the task and the samples' params come from its manifest; read with
``make_loader``) or live samples (``source`` + ``task`` + ``samples``: ``make_live_loader``, epoch e
generates samples e*N .. (e+1)*N-1, so contrastive views are fresh every epoch; their params are
the task's ``TrainerSpec.samples[preset]``, then ``--set sample.KEY=VALUE``).

Settings: ``TrainConfig`` from the task's preset, then ``config`` (a YAML file of TrainConfig keys;
``extra`` a mapping), then ``overrides`` (``--set key=value``, values parsed as YAML; ``extra.key=v``
for recipe extras), then ``epochs`` / ``batch_size``. Optimiser: SGD (momentum, Nesterov) or AdamW,
no weight decay on biases and norm weights; the learning rate warms up linearly over
``warmup_epochs`` and decays by a cosine to 0, per step. AMP on CUDA when ``config.amp`` (bfloat16
where supported, else float16 with a gradient scaler).

Writes in the run folder: ``config.json`` (the resolved config, the data, the sample params),
``checkpoint.pt`` at the end of every epoch (``checkpoint.save_run``: model, optimiser, scheduler,
loader state, RNG states, epoch, step), ``metrics.csv`` (``METRICS_COLUMNS``: a ``steps`` row every
``LOG_EVERY`` steps, the mean over those steps, and an ``epoch`` row, the mean over the epoch;
``epoch`` counts from 1, ``accuracy`` is empty for tasks without one), ``curves.png`` redrawn at
each epoch's end and TensorBoard events when it is installed (``curves.RunRecorder``). ``resume=True`` continues from
the last checkpoint exactly: the next steps give the same losses as an uninterrupted run.

Batches of one sample (a worker's last, when the count does not divide) are skipped and logged:
batch norm cannot train on one sample. ``threads`` > 0 sets torch's intra-op threads for the run
(restored after): on 2 shared cores, 2 threads ran 2x (convolutions) to 100x (ViT) slower than 1
while another process held a core, since each operation waits for the descheduled thread.

Many processes: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (NCCL on
CUDA, Gloo otherwise), the recipe wrapped in DistributedDataParallel, the loader splits the samples
by rank (``uneven="drop"``, so every rank runs the same number of steps) and rank 0 writes the run
folder. Contrastive losses gather every rank's rows (``losses.gather``). ``--resume`` restarts each
rank at the next epoch's first sample. tests/test_ddp.py runs 2 CPU processes over every recipe.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shlex
import time
from pathlib import Path

import torch

from ..errors import ConfigError, PretextgenError

log = logging.getLogger("pretextgen.training")
# data_wait: the share of the window's wall time the loop spent waiting for its next batch (the
# loader must keep the trainer busy: near 0 when it does).
# alignment, uniformity: Wang & Isola's measures of the recipes that embed (empty for the others).
METRICS_COLUMNS = ("epoch", "step", "loss", "accuracy", "lr", "samples_per_s", "kind", "data_wait", "alignment",
                   "uniformity")
MEASURES = ("alignment", "uniformity")
LOG_EVERY = 50
CHECKPOINT = "checkpoint.pt"


# ---------------------------------------------------------------- settings
def _read_config_file(path) -> dict:
    from ..config import read_yaml

    return read_yaml(path, "training config", "setting: value")


def config_values(config=None, overrides=None) -> tuple[dict, dict]:
    """(TrainConfig values, sample-param overrides) from a YAML file and ``--set`` items (a list of
    "key=value" or a dict); ``extra.KEY`` goes into ``extra``, ``sample.KEY`` into the second dict."""
    from ..config import parse_set

    values = dict(_read_config_file(config)) if config else {}
    if "extra" in values and not isinstance(values["extra"], dict):
        raise ConfigError(f"training config {config}: extra must be a mapping")
    values["extra"] = dict(values.get("extra") or {})
    items = parse_set(overrides) if isinstance(overrides, list) else dict(overrides or {})
    samples = {}
    for key, value in items.items():
        head, dot, rest = key.partition(".")
        if dot and head == "extra" and rest:
            values["extra"][rest] = value
        elif dot and head == "sample" and rest:
            samples[rest] = value
        elif dot:
            raise ConfigError(f"--set {key}=...: only extra.KEY (recipe settings) and sample.KEY (live sample "
                              "params) take a dot")
        else:
            values[key] = value
    return values, samples


def _check_types(task, cfg) -> None:
    """Every TrainConfig value of the type its default has (a YAML typo is one line, not a traceback)."""
    import dataclasses

    from .recipe import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        value, default = getattr(cfg, f.name), getattr(TrainConfig(), f.name)
        kind = type(default)
        if kind is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
                setattr(cfg, f.name, value)
            except ValueError:
                pass
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(cfg, f.name, float(value))
            ok = True
        if not ok:
            raise ConfigError(f"{task.name} training: {f.name} must be {kind.__name__}, got {value!r}")
    checks = [("epochs", cfg.epochs >= 1), ("batch_size", cfg.batch_size >= 2), ("lr", cfg.lr > 0),
              ("num_workers", cfg.num_workers >= 0), ("threads", cfg.threads >= 0), ("warmup_epochs", cfg.warmup_epochs >= 0),
              ("optimizer", cfg.optimizer in ("sgd", "adamw"))]
    for name, good in checks:
        if not good:
            want = {"epochs": ">= 1", "batch_size": ">= 2", "lr": "> 0", "num_workers": ">= 0", "threads": ">= 0",
                    "warmup_epochs": ">= 0", "optimizer": "sgd or adamw"}[name]
            raise ConfigError(f"{task.name} training: {name}={getattr(cfg, name)!r}; it must be {want}")


# ---------------------------------------------------------------- optimiser and schedule
def make_optimizer(model: torch.nn.Module, cfg):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


class WarmupCosine:
    """lr factor at step s: linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 at ``total``."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, max(total, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - self.warmup, span) / span))


# ---------------------------------------------------------------- the data
# Sample params that set the pixels a trunk sees, and so what it learns at and what a step costs.
SHAPE_KEYS = ("size", "crop", "tile", "patch", "gap", "target_stride")


def preset_mismatch(t, manifest: dict, preset: str, data) -> str | None:
    """One line naming where a build's sample params differ from the preset's in what the trunk sees
    (``SHAPE_KEYS``), with the command that rebuilds to fit; None when they agree."""
    want = t.trainer.samples.get(preset, {})
    built = manifest["params"]
    differ = [k for k in want if k in built and built[k] != want[k]]
    shape = [k for k in differ if k in SHAPE_KEYS]
    if not shape:
        return None

    def show(params: dict) -> str:
        return ", ".join(f"{k}={json.dumps(params[k])}" for k in differ)

    source = f" --source {shlex.quote(manifest['source'])}" if "source_path" in manifest else ""  # else the default photos
    rebuild = (f"pretextgen build --task {t.name}{source} --out {shlex.quote(str(data) + '-' + preset)} "
               f"--samples {manifest['samples']} --preset {preset}")
    return (f"{data} was built with {show(built)}; the {preset} preset trains on {show(want)}. Rebuild to fit: "
            f"{rebuild} (or train this build as it is with --as-built)")


def _open_data(task, data, source, samples, preset, sample_overrides):
    """(Task, params dict, params, data dir or None, what, live sample params, manifest or None)."""
    from ..config import load_params, make_params, params_to_dict
    from ..registry import get_task
    from ..shards import read_manifest

    if data is not None:
        if source is not None or samples is not None:
            raise PretextgenError("give either --data BUILD_DIR or --source DIR --samples N, not both")
        if sample_overrides:
            raise PretextgenError(f"--set sample.{next(iter(sample_overrides))}: a build's samples are fixed; "
                                  "rebuild it with other params, or train from live samples (--source)")
        data = Path(data)
        m = read_manifest(data)
        if not m.get("complete"):
            raise PretextgenError(f"{data}: the build is incomplete; finish it with `pretextgen build ... --resume`")
        if task is not None and task != m["task"]:
            raise PretextgenError(f"--task {task}, but {data} holds {m['task']} samples")
        t = _trainable(get_task(m["task"]))
        params = make_params(t, m["params"])
        return t, params_to_dict(params), params, data, str(data), None, m
    if task is None:
        raise PretextgenError("give --data BUILD_DIR, or --task with --source DIR --samples N for live samples")
    t = _trainable(get_task(task))
    if samples is None or samples < 2:
        raise PretextgenError("live samples need --samples N (N >= 2: samples per epoch)")
    values = {**t.trainer.samples.get(preset, {}), **sample_overrides}
    params = load_params(t, overrides=values)
    return t, params_to_dict(params), params, None, f"live:{source or 'skimage:data'}", values, None


def _trainable(t):
    if t.trainer is None:
        from ..registry import list_tasks, get_task

        ok = [n for n in list_tasks() if get_task(n).trainer is not None]
        raise PretextgenError(f"task {t.name!r} has no bundled trainer; trainable: {', '.join(ok)}")
    return t


def to_device(batch: dict, device) -> dict:
    """A loader batch with its tensors on ``device`` (the JSON and other values as they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ---------------------------------------------------------------- metrics
class _Window:
    def __init__(self):
        self.loss = self.wait = 0.0
        self.steps = self.samples = 0
        self.sums = {k: 0.0 for k in ("accuracy", *MEASURES)}
        self.counts = {k: 0 for k in self.sums}
        self.start = time.perf_counter()

    def add(self, loss: float, metrics: dict, n: int, wait: float = 0.0):
        """``metrics``: the step's floats by column (accuracy and the measures a recipe reports)."""
        self.wait += wait
        self.loss += loss
        self.steps += 1
        self.samples += n
        for k, v in metrics.items():
            if k in self.sums:
                self.sums[k] += v
                self.counts[k] += 1

    def row(self, epoch, step, lr, kind) -> dict:
        wall = max(time.perf_counter() - self.start, 1e-9)
        means = {k: (f"{self.sums[k] / self.counts[k]:.6f}" if self.counts[k] else "") for k in self.sums}
        return {"epoch": epoch, "step": step, "loss": f"{self.loss / max(self.steps, 1):.6f}", "lr": f"{lr:.6g}",
                "samples_per_s": f"{self.samples / wall:.1f}", "kind": kind, "data_wait": f"{self.wait / wall:.3f}",
                **means}


def _trim_metrics(path: Path, step: int) -> None:
    """Keep the rows up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    _write_rows(path, rows, "w")


def _write_rows(path: Path, rows: list[dict], mode: str = "a") -> None:
    new = mode == "w" or not path.exists()
    with open(path, mode if not new else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        if new:
            w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------- the loop
def _settings(t, values: dict, preset, epochs, batch_size, resume: bool, ckpt_path: Path, params_dict):
    """(TrainConfig, checkpoint state or None): a new run's config from the preset and ``values``; a
    resumed run's own, refusing a setting given that differs from it."""
    from .checkpoint import read_checkpoint
    from .recipe import TrainConfig, resolve_config

    state = None
    if resume:
        if not ckpt_path.exists():
            raise PretextgenError(f"--resume: {ckpt_path} does not exist; start the run without --resume")
        state = read_checkpoint(ckpt_path)
        if state["task"] != t.name:
            raise PretextgenError(f"--resume: {ckpt_path} trained {state['task']}, not {t.name}")
        if state["params"] != params_dict:
            raise PretextgenError(f"--resume: {ckpt_path} trained on samples with other params; "
                                  "resume on the same data")
        cfg = TrainConfig(**state["config"])
        given = {k: v for k, v in values.items() if not (k == "extra" and not v)}
        given.update({k: v for k, v in (("epochs", epochs), ("batch_size", batch_size)) if v is not None})
        resolve_config(t, cfg.preset, {k: v for k, v in given.items() if k != "extra"})  # unknown keys
        changed = sorted(k for k, v in given.items()
                         if (cfg.extra | v if k == "extra" else v) != getattr(cfg, k, object()))
        if changed:
            raise PretextgenError(f"--resume continues the run with its own settings; {changed[0]} differs from "
                                  f"{ckpt_path.parent / 'config.json'} (start a new run to change it)")
    else:
        if ckpt_path.exists():
            raise PretextgenError(f"{ckpt_path.parent} already holds a run ({CHECKPOINT}); continue it with --resume "
                                  "or choose another --out")
        values.update({k: v for k, v in (("epochs", epochs), ("batch_size", batch_size)) if v is not None})
        if not values["extra"]:
            values.pop("extra")
        else:
            values["extra"] = {**t.trainer.presets.get(preset, {}).get("extra", {}), **values["extra"]}
        cfg = resolve_config(t, preset, values)
    _check_types(t, cfg)
    return cfg, state


def _device_and_ranks(device) -> tuple[torch.device, int, int]:
    """(device, world size, rank): CUDA when there is one (the local rank's under torchrun); under
    torchrun the process group is initialised (NCCL on CUDA, Gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise PretextgenError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PretextgenError(f"--device {device}: torch sees no CUDA device (a CPU build of torch?); use --device cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, world, rank


def _open_loader(t, cfg, data_dir, samples, source, live_values, world: int):
    """The run's loader: the build's shards, or live samples; split by rank under torchrun (``uneven``
    "drop": every rank runs the same number of steps)."""
    from ..loader import LiveDataset, Loader, make_loader

    uneven = "drop" if world > 1 else "keep"
    if data_dir is not None:
        return make_loader(data_dir, batch_size=cfg.batch_size, num_workers=cfg.num_workers, seed=cfg.seed,
                           uneven=uneven)
    # make_live_loader's dataset, with the uneven policy DDP needs
    return Loader(LiveDataset(t.name, samples, source, cfg.seed, overrides=live_values, uneven=uneven,
                              batch_size=cfg.batch_size), cfg.batch_size, cfg.num_workers)


class _Parts:
    """What one run trains with: the recipe (and its DDP wrapper ``model``), optimiser, schedule,
    gradient scaler and autocast settings."""

    def __init__(self, t, params, cfg, state, data_dir, loader, device, world: int):
        from .recipe import build_recipe

        steps_per_epoch = len(loader)
        self.recipe = build_recipe(t, params, cfg)
        if state is None:
            self.recipe.prepare(data_dir, loader.dataset)
        self.recipe.to(device)
        self.model = self.recipe
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.recipe, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(self.recipe, cfg)
        schedule = WarmupCosine(round(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.amp = cfg.amp and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

    def resume(self, state, loader, rank: int, world: int, path) -> tuple[int, int]:
        """Load a checkpoint's weights, optimiser, schedule, scaler, loader position and RNG states;
        (epoch, step) to continue from. Under torchrun every rank restarts at the next epoch's first
        sample (checkpoints are written at epoch ends, and each rank's loader position is its own)."""
        from .checkpoint import load_weights, set_rng_state

        load_weights(self.recipe, state, f"--resume: {path}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["extra"].get("scaler"):
            self.scaler.load_state_dict(state["extra"]["scaler"])
        if rank == 0 and world == 1:
            loader.load_state_dict(state["loader"])
        else:
            loader.set_epoch(state["loader"]["epoch"])
        set_rng_state(state["rng"])
        return state["epoch"], state["step"]

    def step(self, batch: dict, device, name: str, cfg, step: int) -> tuple[float, dict]:
        """One optimiser step on ``batch``: (loss, the metrics the recipe reported, as floats)."""
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp):
            loss, metrics = self.model(batch)
        if not torch.isfinite(loss):
            raise PretextgenError(f"{name} training: the loss is {loss.item()} at step {step}; lower lr "
                                  f"(now {cfg.lr:g}) or set amp=false")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), {k: float(metrics[k]) for k in ("accuracy", *MEASURES) if k in metrics}


def train(task=None, data=None, out=None, source=None, samples=None, preset="cpu", epochs=None,
          batch_size=None, resume=False, config=None, overrides=None, progress=None, device=None,
          until_epoch=None, as_built=False) -> dict:
    """Train ``task``'s recipe; returns the run's summary dict (``line`` holds the one-line summary).

    ``data``: a build folder; or ``source`` (None: scikit-image's photos) + ``task`` + ``samples`` for
    live samples. ``config``: YAML of TrainConfig keys; ``overrides``: ["key=value", ...] or a dict
    (``extra.KEY``, ``sample.KEY`` as in the module docstring). ``progress``: None (a bar when stderr
    is a terminal), True or False. ``device``: None (CUDA if available, the local rank's under
    torchrun), "cpu", "cuda"... ``until_epoch``: stop after that epoch as an interruption would (the
    schedule still spans ``config.epochs``); ``resume=True`` continues. A build whose samples differ
    from the preset's in size (``preset_mismatch``) is named in a warning first, unless ``as_built``.

    The steps: open the data, settle the settings, the device and ranks, the loader, build the
    parts (``_Parts``), resume, then epochs of steps, each epoch ending in a metrics row and a
    checkpoint (``_end_epoch``)."""
    from ..progress import Progress, duration
    from .curves import RunRecorder

    if out is None:
        raise PretextgenError("give the run folder: out=RUN_DIR (--out)")
    values, sample_overrides = config_values(config, overrides)
    t, params_dict, params, data_dir, what, live_values, manifest = _open_data(task, data, source, samples, preset,
                                                                                sample_overrides)
    mismatch = manifest is not None and not as_built and not resume and preset_mismatch(t, manifest, preset, data_dir)
    if mismatch:
        log.warning(mismatch)
    out = Path(out)
    ckpt_path = out / CHECKPOINT
    cfg, state = _settings(t, values, preset, epochs, batch_size, resume, ckpt_path, params_dict)
    device, world, rank = _device_and_ranks(device)
    loader = _open_loader(t, cfg, data_dir, samples, source, live_values, world)
    parts = _Parts(t, params, cfg, state, data_dir, loader, device, world)
    if state is not None:
        epoch, step = parts.resume(state, loader, rank, world, ckpt_path)
    else:
        epoch, step = 0, 0
        torch.manual_seed(cfg.seed)

    writer = rank == 0
    metrics_path = out / "metrics.csv"
    recorder = RunRecorder(out, resume=state is not None)  # curves.png and TensorBoard; used on rank 0
    if writer:
        _start_run_folder(out, metrics_path, state, step, t, what, loader, world, params_dict, cfg)

    threads_before = torch.get_num_threads()
    if cfg.threads > 0:  # fewer than the cores helps where other processes (data workers, jobs) share them
        torch.set_num_threads(cfg.threads)
    last_epoch = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
    n_samples = loader.dataset.rank_samples()
    bar = Progress(n_samples * max(last_epoch - epoch, 0), f"train {t.name}", "samples",
                   (progress if writer else False))
    def log_row(row: dict) -> None:
        _write_rows(metrics_path, [row])
        recorder.row(row)

    start = time.perf_counter()
    seen = 0
    epoch_row = None
    parts.model.train()
    try:
        while epoch < last_epoch:
            step, whole = _run_epoch(parts, loader, device, t.name, cfg, epoch, step, bar, log_row if writer else None)
            seen += whole.samples
            epoch += 1
            epoch_row = whole.row(epoch, step, parts.optimizer.param_groups[0]["lr"], "epoch")
            acc_ = f", pretext accuracy {float(epoch_row['accuracy']):.1%}" if epoch_row["accuracy"] else ""
            bar.line(f"train {t.name}: epoch {epoch}/{cfg.epochs} done, step {step}, loss {float(epoch_row['loss']):.4f}"
                     f"{acc_}, {float(epoch_row['samples_per_s']):,.0f} samples/s, eta {duration(bar.eta)}")
            if writer:
                _end_epoch(ckpt_path, metrics_path, recorder, epoch_row, parts, loader, t, params_dict, cfg, epoch,
                           step, what)
    finally:
        bar.close()
        if writer:
            recorder.close()
        torch.set_num_threads(threads_before)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return _summary(t, cfg, epoch, step, epoch_row, seen, time.perf_counter() - start, device, ckpt_path, out, what)


def _run_epoch(parts: _Parts, loader, device, name: str, cfg, epoch: int, step: int, bar, log_rows):
    """One pass over the loader: a step per batch (batches of one sample skipped: batch norm cannot
    train on them), a ``steps`` row to ``log_rows`` every ``LOG_EVERY`` steps (None: this rank
    writes nothing). Returns (step, the epoch's ``_Window``)."""
    window, whole = _Window(), _Window()
    batches = iter(loader)
    while True:
        asked = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - asked
        if batch is None:
            return step, whole
        n = len(batch["label"])
        if n < 2:
            log.info("skipped a batch of %d sample (batch norm needs 2)", n)
            continue
        lr = parts.optimizer.param_groups[0]["lr"]
        value, reported = parts.step(to_device(batch, device), device, name, cfg, step)
        step += 1
        window.add(value, reported, n, waited)
        whole.add(value, reported, n, waited)
        bar.update(n, step=step, loss=f"{window.loss / window.steps:.4f}")
        if step % LOG_EVERY == 0:
            if log_rows is not None:  # as they come (a resume trims what follows its checkpoint)
                log_rows(window.row(epoch + 1, step, lr, "steps"))
            window = _Window()


def _start_run_folder(out: Path, metrics_path: Path, state, step: int, t, what, loader, world, params_dict, cfg):
    """The run folder and its config.json; metrics.csv new, or trimmed to the checkpoint's step."""
    from ..version import __version__

    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        metrics_path.unlink(missing_ok=True)
    else:
        _trim_metrics(metrics_path, step)
    (out / "config.json").write_text(json.dumps(
        {"task": t.name, "data": what, "samples_per_epoch": loader.dataset.rank_samples() * world,
         "params": params_dict, "config": cfg.to_dict(), "version": __version__, "world_size": world},
        indent=2) + "\n")


def _end_epoch(ckpt_path, metrics_path, recorder, epoch_row, parts, loader, t, params_dict, cfg, epoch, step, what):
    """The epoch's metrics row, the checkpoint (model with its buffers: a memory of negatives travels
    in it), curves.png."""
    from .checkpoint import save_run

    _write_rows(metrics_path, [epoch_row])
    recorder.row(epoch_row)
    save_run(ckpt_path, task=t.name, params=params_dict, config=cfg.to_dict(), model=parts.recipe.state_dict(),
             epoch=epoch, step=step, optimizer=parts.optimizer.state_dict(), scheduler=parts.scheduler.state_dict(),
             loader=loader.state_dict(), extra={"data": what, "scaler": parts.scaler.state_dict()})
    recorder.epoch_end()


def _summary(t, cfg, epoch, step, epoch_row, seen, seconds, device, ckpt_path, out, what) -> dict:
    loss_ = float(epoch_row["loss"]) if epoch_row else None
    acc_ = float(epoch_row["accuracy"]) if epoch_row and epoch_row["accuracy"] else None
    rate = seen / max(seconds, 1e-9)
    done = "" if epoch >= cfg.epochs else f" (stopped; {cfg.epochs - epoch} to go with --resume)"
    line = (f"{t.name}: epoch {epoch}/{cfg.epochs}{done}, {step} steps, loss {loss_:.4f}"
            if loss_ is not None else f"{t.name}: epoch {epoch}/{cfg.epochs}, nothing left to train")
    if acc_ is not None:
        line += f", pretext accuracy {acc_:.1%}"
    line += f", {rate:,.0f} samples/s on {device.type} in {seconds:,.0f} s -> {ckpt_path}"
    return {"task": t.name, "epoch": epoch, "epochs": cfg.epochs, "step": step, "loss": loss_, "accuracy": acc_,
            "seconds": seconds, "samples_per_s": rate, "device": str(device), "checkpoint": str(ckpt_path),
            "run_dir": str(out), "data": what, "config": cfg.to_dict(), "line": line,
            "data_wait": float(epoch_row["data_wait"]) if epoch_row else None}
