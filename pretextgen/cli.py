"""The command line: ``pretextgen build``, ``inspect``, ``verify``, ``train``, ``eval``, ``compare`` and the
scale-out commands, in the order a user meets them (``pretextgen --help``).

User mistakes (bad paths, unknown tasks, bad config values) print one ``pretextgen: error:`` line and
exit with status 2; nothing else prints a traceback unless ``--debug`` is given.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from .version import __version__
from .errors import PretextgenError

EPILOG_BUILD = """\
examples:
  pretextgen build --task jigsaw --out out/jigsaw                 # scikit-image's photos, 512 samples
  pretextgen build --task context --source photos/ --out out/ctx --samples 100000
  pretextgen build --task jigsaw --source photos/ --out out/j --set permutations=1000 --set grid=3
  pretextgen build --task rotation --source photos/ --out out/rot --resume   # after an interruption
  pretextgen build --task rotation --source 'photos/**/*.jpg' --out out/rot    # a glob (or a file of paths)
  pretextgen plan-sources --task jigsaw --source photos/ --out /shared/j --samples 1000000
  pretextgen build --out /shared/j --num-workers 8 --worker-index 3    # on each of 8 workers, then:
  pretextgen merge /shared/j

Shards are <task>-NNNNNN.tar (WebDataset): <key>.<field>.npy|png, <key>.cls (label), <key>.json
(the plan: source path and boxes in source pixels). manifest.json lists shards with sha256,
params, seed, skipped inputs and the label histogram. See `pretextgen tasks` for the tasks.
"""


EPILOG_TRAIN = """\
examples:
  pretextgen build --task rotation --source photos/ --out out/rot --preset cpu   # samples fit for the CPU preset
  pretextgen train --data out/rot --out runs/rot                     # CPU preset
  pretextgen train --data out/rot --out runs/rot --resume            # after an interruption
  pretextgen train --data out/rot --out runs/rot2 --set lr=0.1 --set extra.head_width=512
  pretextgen train --task contrastive --source photos/ --samples 20000 --out runs/simclr
  torchrun --nproc_per_node 4 -m pretextgen.cli train --data out/rot --out runs/rot --preset gpu

Writes RUN_DIR/checkpoint.pt (every epoch), metrics.csv (loss, pretext accuracy, lr, samples/s) and
config.json. Then: pretextgen eval --checkpoint RUN_DIR --data LABELED_DIR.
  pretextgen train --task contrastive --source photos/ --samples 20000 --out runs/moco \
      --set extra.memory=queue --set extra.loss=info_nce
The presets of each task: pretextgen/tasks/<task>.py (trainer=); its recipe (heads, loss, extra.KEY
settings): pretextgen/training/recipes/<family>.py; the losses: pretextgen/training/losses.py.
"""


# Options the plan of a build fixes: with a planned --out and no --task, they come from plan.json
# (--source may still say where this machine sees the plan's sources).
PLAN_OPTIONS = ("samples", "seed", "backend", "device", "config", "preset", "set", "pixels", "full_decode",
                "batch_size", "shard_mb")


def _build_arguments(b: argparse.ArgumentParser) -> None:
    """The options of a build's plan (``build`` and ``plan-sources``). Left out, they are absent from
    the namespace (SUPPRESS): ``build --out PLANNED`` tells an option given from a default."""
    b.add_argument("--task", help="task name (see `pretextgen tasks`); may be left out when --out holds a plan")
    b.add_argument("--out", required=True, help="output folder for shards and manifest.json")
    d = argparse.SUPPRESS
    b.add_argument("--source", default=d,
                   help="images or videos: a folder (searched recursively), a text file listing paths, or a quoted "
                        "glob ('photos/**/*.jpg') (default: scikit-image's bundled photos)")
    b.add_argument("--samples", type=int, default=d, help="number of samples (default: 512)")
    b.add_argument("--seed", type=int, default=d, help="sample i depends on (seed, i) alone (default: 0)")
    from .backends import get_backend, list_backends

    backends = list_backends()
    devices = sorted({d for n in backends for d in get_backend(n).devices})
    b.add_argument("--backend", default=d, choices=["auto", *backends],
                   help="auto (default): DALI on the GPU if there is one, else OpenCV in threads (faster on CPUs: "
                        "BENCHMARKS.md); video tasks read frames with decord on CPUs, DALI on a GPU")
    b.add_argument("--device", default=d, choices=["auto", *devices], help="auto (default): the GPU if DALI sees one")
    b.add_argument("--config", default=d, help="YAML file of task parameters (over the shipped defaults)")
    b.add_argument("--preset", default=d, choices=["cpu", "gpu"],
                   help="the sample params that `pretextgen train --preset` trains on (cpu: 32 px samples for the "
                        "small CPU trunk); --set still overrides them")
    b.add_argument("--set", action="append", default=d, metavar="KEY=VALUE",
                   help="override one task parameter (repeatable)")
    b.add_argument("--workers", type=int, help="CPU threads for image tasks, processes for video tasks (default: all "
                   "cores; split among --processes)")
    b.add_argument("--pixels", default=d, choices=["png", "npy"],
                   help="how image fields (rotation, inpainting, mae) are stored, both lossless: png (default) is "
                        "about half the bytes; npy is much faster to write and read (BENCHMARKS.md)")
    b.add_argument("--full-decode", action="store_true", default=d,
                   help="OpenCV backend: decode every JPEG at full size. By default a JPEG at least twice as large "
                        "as a sample's views need is decoded at 1/2 to 1/64 scale (libjpeg's DCT scaling: faster on "
                        "large photos), with the same boxes; the sample's JSON records jpeg_scale")
    b.add_argument("--batch-size", type=int, default=d, help="DALI batch size (default: 64)")
    b.add_argument("--shard-mb", type=float, default=d, help="maximum shard size in MB (default: 256)")


def preset_overrides(task: str, preset: str | None) -> list[str]:
    """``--preset``: the task's trainer's sample params for that preset, as ``--set`` items."""
    import json

    from .registry import get_task

    if preset is None:
        return []
    t = get_task(task)
    if t.trainer is None:
        raise PretextgenError(f"--preset {preset}: task {task} has no bundled trainer, so no preset sample params")
    return [f"{k}={json.dumps(v)}" for k, v in t.trainer.samples.get(preset, {}).items()]


def _build_options(args) -> dict:
    """BuildOptions fields from the plan options given on the command line (and --workers, progress)."""
    given = {k: getattr(args, k) for k in PLAN_OPTIONS if hasattr(args, k)}
    if args.task is None and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise PretextgenError(f"without --task the build is the plan's in --out: leave out {flags} (or give --task "
                              "and the plan's options)")
    opts = {k: v for k, v in given.items() if k not in ("set", "shard_mb", "preset")}
    if "set" in given or "preset" in given:
        opts["overrides"] = preset_overrides(args.task, given.get("preset")) + given.get("set", [])
    if "shard_mb" in given:
        opts["shard_bytes"] = int(given["shard_mb"] * 2**20)
    return {**opts, "workers": args.workers, "progress": False if args.no_progress else None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretextgen", description="Labeled samples for self-supervised pretext tasks, from photos and videos, as verifiable "
                                "WebDataset shards; bundled trainers and an honest evaluation.")
    p.add_argument("--version", action="version", version=f"pretextgen {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="make a task's samples from photos or videos, into shards", epilog=EPILOG_BUILD,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _build_arguments(b)
    b.add_argument("--resume", action="store_true", help="continue an interrupted build in --out")
    b.add_argument("--processes", type=int,
                   help="build shards in this many processes, each with its own backend: one Python process "
                        "cannot keep a GPU busy. The shards are the same bytes whatever the number "
                        "(default: on a GPU one per two cores, at most 8; on CPUs 1)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = b.add_argument_group("scale-out (docs/scale-out.md)")
    g.add_argument("--num-workers", type=int, metavar="W",
                   help="job array of W workers: this one makes every W-th shard and writes parts/worker-K-of-W.json; "
                        "then pretextgen merge OUT (default: SLURM_ARRAY_TASK_COUNT, else torchrun's WORLD_SIZE)")
    g.add_argument("--worker-index", type=int, metavar="K",
                   help="this worker's index, 0..W-1 (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, else RANK)")
    g.add_argument("--shards", metavar="SPEC", help="make only these shard numbers: A:B (A to B-1), A:, N, comma-separated "
                   "(rebuilds what pretextgen merge names); then pretextgen merge OUT")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="one Ray task per shard: without ADDRESS on a Ray instance started here for the build; with "
                        "it (auto, HOST:6379, ray://HOST:10001) on that cluster, whose nodes must all see --out and "
                        "--source. Needs pip install 'pretextgen[ray]'")
    g.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs (and threads) per Ray task (default: 1)")
    g.add_argument("--ray-gpus", type=float, default=0.25,
                   help="fraction of a GPU per Ray task on the GPU device: several build processes share one "
                        "(default: 0.25)")

    i = sub.add_parser("inspect", help="summarise a build or a training run; draw samples; look for shortcuts")
    i.add_argument("out", metavar="DIR", help="a build's folder (holds manifest.json), or a training run's "
                   "(its summary, eval results and curves.png)")
    i.add_argument("--sheet", metavar="FILE.png", help="write a contact sheet of samples")
    i.add_argument("--html", metavar="FILE.html", help="write one self-contained HTML page (samples, histograms)")
    i.add_argument("--samples", type=int, default=12, help="samples drawn on the sheet/page (default: 12)")
    i.add_argument("--audit", action="store_true", help="train a shallow probe on low-level cues (shortcut audit)")
    i.add_argument("--source", metavar="DIR", help="where the build's sources are now (default: the manifest's)")

    v = sub.add_parser("verify", help="check a build: hashes, labels, samples made again from their sources")
    v.add_argument("out", metavar="OUT_DIR", help="a build's folder (holds manifest.json)")
    v.add_argument("--samples", type=int, default=32, help="how many random samples to re-derive (default: 32)")
    v.add_argument("--seed", type=int, default=0, help="which random samples (default: 0)")
    v.add_argument("--source", help="where the build's sources are now (default: the manifest's)")

    tr = sub.add_parser("train", help="train the task's bundled model on a build (or on samples made live)",
                        description="Train the task's recipe (trunk + the paper's head and loss) on a build's samples,\n"
                                    "or on samples generated live (--source, --samples: fresh ones every epoch).\n"
                                    "Settings: the task's --preset, then --config FILE (YAML), then --set KEY=VALUE.",
                        epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--task", help="task name (default: the build's); required with --source")
    tr.add_argument("--data", metavar="BUILD_DIR", help="a build's folder (holds manifest.json)")
    tr.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder: checkpoint.pt, metrics.csv, config.json")
    tr.add_argument("--preset", default="cpu", choices=["cpu", "gpu"],
                    help="cpu: small conv trunk, minutes on 2 cores; gpu: ResNet-18 (ViT-tiny for mae), AMP (default: cpu)")
    tr.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    tr.add_argument("--batch-size", type=int, help="samples per step (default: the preset's)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, exactly")
    tr.add_argument("--config", metavar="FILE", help="YAML of training settings (keys of --set; extra: a mapping)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="one training setting, value as YAML (repeatable): lr, weight_decay, optimizer (sgd|adamw), "
                         "trunk (small|resnet18|vit_tiny), warmup_epochs, amp, num_workers, threads, seed, extra.KEY (recipe "
                         "settings, e.g. extra.temperature=0.2), sample.KEY (live samples' params)")
    tr.add_argument("--source", metavar="DIR", help="train on live samples of these photos instead of a build")
    tr.add_argument("--samples", type=int, help="with --source: samples per epoch (each epoch draws new ones)")
    tr.add_argument("--device", help="cpu, cuda, cuda:1... (default: CUDA if available)")
    tr.add_argument("--as-built", action="store_true",
                    help="train a build whose sample size differs from the preset's as it is, without the warning")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="what a trained trunk learned: linear probe and kNN, beside a random trunk",
                       description="Freeze the trunk of a training run (eval mode: batch-norm statistics fixed) and\n"
                                   "measure what it learned, per stage: a linear probe (logistic regression, L-BFGS,\n"
                                   "L2 chosen on an 80/20 split of train, never on test) and kNN (cosine, k=20,\n"
                                   "T=0.07), beside the same for randomly initialised trunks of the same recipe and\n"
                                   "for raw pixels, all from the same converted input (a trunk trained on L sees L).\n"
                                   "Flags a likely shortcut: pretext accuracy >= 95% and no gain beyond the noise.",
                       epilog="LABELED_DIR holds train/<class>/* and test/<class>/* (or val/<class>/*); images are\n"
                              "center-cropped to a square and resized to the size the trunk trained on (or --size).\n"
                              "The random baseline is the mean of three seeded trunks; gains carry a 95% interval\n"
                              "(a paired bootstrap over the test images).\n\n"
                              "example:\n  pretextgen eval --checkpoint runs/rot --data labeled/ "
                              "--json runs/rot/eval.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="a training run's folder, or its checkpoint.pt (metrics.csv beside it gives the pretext accuracy)")
    e.add_argument("--data", metavar="LABELED_DIR", help="folder with train/<class>/ and test/<class>/ (or val/)")
    e.add_argument("--davis", metavar="DAVIS_DIR",
                   help="also (or instead) propagate frame 0's mask through every sequence of a DAVIS-layout folder "
                        "with the trunk's last stage; J, F and J&F beside random trunks, Lab pixels, a flow chain "
                        "and a copied first mask")
    e.add_argument("--clips", metavar="CLIPS_DIR",
                   help="frame_order and track: the pretext accuracy on clips the build never saw (built there with "
                        "the run's sample params; track without its appearance check), beside random trunks and a "
                        "low-level baseline (frame differences; NCC)")
    e.add_argument("--clips-samples", type=int, default=512, metavar="N",
                   help="samples built from --clips (default: 512)")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON (accuracies in [0, 1])")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where features and probes run (default: cpu)")
    e.add_argument("--seed", type=int, default=0, help="the probe's held-out split and the random trunks (default: 0)")
    e.add_argument("--protocol", metavar="NAME",
                   help="how labeled images reach the trunk: whole (default; patch tasks: at the scale their "
                        "patches were cut at) or, for jigsaw and context, grid (the training grid's patches, "
                        "features averaged)")
    e.add_argument("--size", type=int, metavar="N",
                   help="resize the labeled images to N px instead of the recipe's eval size (e.g. a jigsaw trunk "
                        "at the crop its tiles were cut from); every row is probed at N")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    c = sub.add_parser("compare", help="build, train and evaluate several tasks on your photos and clips; one ranked table",
                       description="For each task: build from --source (photos) or --video-source (clips) with the\n"
                                   "preset's sample params, train at the preset, evaluate on --labeled (video tasks:\n"
                                   "also on --davis and --clips); then one table ranked by what each trunk's best stage\n"
                                   "gained over a random trunk's (linear probe top-1; without a probe: DAVIS J&F, then\n"
                                   "unseen clips). Each step is skipped when its output exists, so an interrupted\n"
                                   "comparison continues where it stopped.",
                       epilog="examples:\n  pretextgen compare --tasks rotation jigsaw --source photos/ --labeled labeled/ "
                              "--out cmp\n  pretextgen compare --tasks frame_order video_colorization --video-source clips/ "
                              "--davis DAVIS/ --labeled labeled/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--tasks", nargs="+", required=True, help="tasks (see `pretextgen tasks`)")
    c.add_argument("--source", metavar="DIR", help="photos the image tasks build from (their labels are not used)")
    c.add_argument("--video-source", metavar="DIR", help="clips the video tasks build from")
    c.add_argument("--labeled", metavar="LABELED_DIR",
                   help="train/<class>/ and test/<class>/ (or val/): the image probe (needed for image tasks)")
    c.add_argument("--davis", metavar="DAVIS_DIR", help="video tasks: label propagation on a DAVIS-layout folder")
    c.add_argument("--clips", metavar="CLIPS_DIR", help="frame_order, track: the pretext on clips the builds never saw")
    c.add_argument("--clips-samples", type=int, default=512, metavar="N", help="samples built from --clips (default: 512)")
    c.add_argument("--out", default="compare", metavar="DIR", help="where builds, runs and results go (default: compare)")
    c.add_argument("--preset", default="cpu", choices=["cpu", "gpu"], help="sample and training preset (default: cpu)")
    c.add_argument("--samples", type=int, default=20000, help="samples per build (default: 20000)")
    c.add_argument("--epochs", type=int, help="epochs (default: each preset's)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")

    pl = sub.add_parser("plan-sources", help="a distributed build's first step: list and scan the sources once",
                        description="List and scan the sources and run the task's own pass (colour prior, k-means\n"
                        "centres, permutation set) once, writing plan.json and sources.json into --out: the\n"
                        "files every worker of pretextgen build --out OUT --num-workers W --worker-index K reads\n"
                        "instead of listing the sources again.", formatter_class=argparse.RawDescriptionHelpFormatter)
    _build_arguments(pl)
    pl.add_argument("--no-progress", action="store_true", help="no progress bar")

    mg = sub.add_parser("merge", help="join a job-array build's parts into one manifest, checking every shard")
    mg.add_argument("out", metavar="OUT_DIR", help="the build's folder (holds plan.json and parts/)")

    t = sub.add_parser("tasks", help="list the tasks, their parameters and limits")
    t.add_argument("pattern", nargs="?", default="*", help="glob over task names")

    r = sub.add_parser("prior", help="the ab colour prior of a folder of photos (colorization, splitbrain)")
    r.add_argument("--source", help="folder of images (default: scikit-image's bundled photos)")
    r.add_argument("--out", required=True, help="prior file to write (JSON); reuse it with --set prior=FILE")
    r.add_argument("--config", help="YAML file of colorization parameters (grid_step, prior_side, gray_*...)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one parameter (repeatable)")
    r.add_argument("--workers", type=int, help="CPU processes (default: all cores)")
    for command in sub.choices.values():  # `pretextgen build ... --debug` as well as `pretextgen --debug build`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
    return p


def _cmd_tasks(args) -> int:
    from .config import limits_of, load_params, params_to_dict
    from .registry import get_task, list_tasks

    names = list_tasks(args.pattern)
    if not names:
        raise PretextgenError(f"no task matches {args.pattern!r}; the tasks: {', '.join(list_tasks())}")
    width = max(len(n) for n in names) + 2
    for name in names:
        t = get_task(name)
        params = params_to_dict(load_params(t))
        print(f"{name:<{width}}{t.summary}; fields: {', '.join(t.doc_fields())}")
        print(" " * width + " ".join(f"{k}={v}" for k, v in params.items()).replace("'", ""))
        if t.usable:
            print(" " * width + f"usable: {t.usable}")
        limits = limits_of(t)
        if limits:
            print(" " * width + "at most: " + " ".join(f"{k}={v}" for k, v in limits.items()))
    return 0


def _cmd_build(args) -> int:
    from .builder import build
    from .jobs import environment_position

    opts = _build_options(args)
    num, index = args.num_workers, args.worker_index
    if num is None and index is None and args.ray is None and args.shards is None:
        found = environment_position()
        if found is not None:
            index, num, where = found
            print(f"pretextgen: worker {index} of {num} (from {where})", file=sys.stderr)
    m = build(task=args.task, out=args.out, source=getattr(args, "source", None), resume=args.resume,
              processes=args.processes, num_workers=num, worker_index=index, shards=args.shards, ray=args.ray,
              ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus, **opts)
    if "part" in m:  # one worker's (or one range's) shards: the build is complete once merged
        samples = sum(r["samples"] for r in m["shards"])
        kept = len(m["shards"]) - m["_made"]
        print(f"{m['task']}: worker {m['worker_index']} of {m['num_workers']}: {len(m['shards'])} of "
              f"{m['shards_total']} shards ({samples} samples; {m['_made']} made, {kept} kept from an earlier run) "
              f"-> {Path(args.out) / m['part']}\n"
              f"next: when every worker is done: pretextgen merge {shlex.quote(args.out)}")
        return 0
    from .sources import quirk_summary, skip_summary, slow_summary

    size = sum(s["bytes"] for s in m["shards"]) / 2**20
    rate = m["samples"] / max(m["_seconds"], 1e-9)
    print(f"{m['task']}: {m['samples']} samples in {len(m['shards'])} shard(s), {size:.1f} MB, "
          f"{rate:,.0f} samples/s on {m['backend']}/{m['device']}; sources: {m['sources_used']} used, "
          f"{len(m['skipped'])} skipped -> {args.out}")
    redrawn = [f"redrawn {n}: {reason} (plans drawn again from other sources)"
               for reason, n in m.get("rejected_plans", {}).items()]
    for line in (skip_summary(m["skipped"]) + quirk_summary(m.get("quirky_sources", [])) + redrawn
                 + slow_summary(m.get("slow_sources", []))):
        print(f"  {line}")
    out = shlex.quote(args.out)
    print(f"next: pretextgen inspect {out} --sheet {shlex.quote(os.path.join(args.out, 'sheet.png'))}"
          "   # look at samples\n"
          f"      pretextgen verify {out}   # re-derive samples from their sources, check labels")
    from .registry import get_task

    if get_task(m["task"]).trainer is not None:
        run = shlex.quote(os.path.join("runs", Path(args.out).name or m["task"]))
        print(f"      pretextgen train --data {out} --out {run}   # the task's bundled trainer (--preset cpu|gpu)")
    print(f"      pretextgen.loader.make_loader({str(args.out)!r}, batch_size=64)   # batches for your own training")
    return 0


def _cmd_plan_sources(args) -> int:
    from .builder import plan

    if args.task is None:
        raise PretextgenError("plan-sources needs --task")
    h = plan(args.task, args.out, getattr(args, "source", None), **_build_options(args))
    from .sources import quirk_summary, skip_summary

    out = shlex.quote(args.out)
    print(f"{h['task']}: planned {h['samples']} samples in {h['shards_total']} shard(s) on {h['backend']}/{h['device']}; "
          f"sources: {h['sources_used']} used, {len(h['skipped'])} skipped -> {Path(args.out) / 'plan.json'}")
    for line in skip_summary(h["skipped"]) + quirk_summary(h.get("quirky_sources", [])):
        print(f"  {line}")
    print(f"next: pretextgen build --out {out} --num-workers W --worker-index K   # on each of W workers "
          "(a Slurm array: docs/scale-out.md)\n"
          f"      pretextgen merge {out}   # when all are done")
    return 0


def _cmd_merge(args) -> int:
    from .jobs import merge, stale_temporaries

    m = merge(args.out)
    size = sum(s["bytes"] for s in m["shards"]) / 2**20
    print(f"{m['task']}: {m['samples']} samples in {len(m['shards'])} shards, {size:.1f} MB, every sha256 checked "
          f"-> {Path(args.out) / 'manifest.json'}")
    stale = stale_temporaries(Path(args.out))
    if stale:
        print(f"  {len(stale)} temporary files of attempts that died are left (e.g. {stale[0].name}): safe to delete")
    print(f"next: pretextgen verify {shlex.quote(args.out)}   # re-derive samples from their sources, check labels")
    return 0


def _cmd_verify(args) -> int:
    from .verify import verify

    if args.samples < 0:
        raise PretextgenError("--samples must be at least 0")
    report = verify(args.out, count=args.samples, seed=args.seed, source=args.source)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _cmd_inspect(args) -> int:
    from .inspect import inspect_cmd

    return inspect_cmd(args.out, sheet=args.sheet, page=args.html, samples=args.samples, audit=args.audit,
                       source=args.source)


def _cmd_prior(args) -> int:
    """``pretextgen prior``: scan ``--source`` (default: scikit-image's photos), write the ab prior."""
    from pathlib import Path

    from .config import load_params
    from .parallel import default_workers
    from .progress import Progress
    from .registry import get_task
    from .sources import default_source, list_files, scan
    from .tasks.colorization import write_prior

    p = load_params(get_task("colorization"), args.config, args.set or [])
    if args.workers is not None and args.workers < 1:
        raise PretextgenError("--workers must be at least 1")
    workers = args.workers or default_workers()
    root, files = default_source() if args.source is None else (Path(args.source), list_files(Path(args.source)))
    sources, skipped = scan(root, files, p.min_side, workers)
    if not sources:
        raise PretextgenError(f"no usable image in {args.source or 'skimage:data'} ({len(skipped)} files skipped)")
    bar = Progress(len(sources), "ab prior", "images")
    data = write_prior(p, root, sources, args.out, workers, bar)
    bar.close()
    print(f"ab prior: {len(data['bins'])} bins (grid {p.grid_step}), {data['pixels']:,} pixels of {data['images']} "
          f"images; {len(data['gray'])} near-grayscale and {len(skipped)} unusable files skipped -> {args.out}")
    return 0


def _cmd_eval(args) -> int:
    """``pretextgen eval``: the evaluation table (and --json)."""
    import json

    from .training.probe import evaluate, report

    if args.data is None and args.davis is None and args.clips is None:
        raise PretextgenError("give --data LABELED_DIR (the image probe), --davis DAVIS_DIR (mask propagation), "
                              "--clips CLIPS_DIR (frame_order, track: the pretext on unseen clips), or several")
    progress = False if args.no_progress else None
    result = {}
    if args.data is not None:
        result = evaluate(args.checkpoint, args.data, seed=args.seed, device=args.device, progress=progress,
                          size=args.size, protocol=args.protocol)
        print("\n".join(report(result)))
    if args.davis is not None:
        from .training.davis import davis_report, evaluate_davis

        found = evaluate_davis(args.checkpoint, args.davis, seed=args.seed, device=args.device, progress=progress)
        result = {"task": found.pop("task"), **result, "davis": found}
        print("\n".join(davis_report({"task": result["task"], **found})))
    if args.clips is not None:
        from .training.clips_eval import clips_report, evaluate_clips

        found = evaluate_clips(args.checkpoint, args.clips, samples=args.clips_samples, seed=args.seed,
                               device=args.device, progress=progress)
        result = {"task": found.pop("task"), **result, "clips": found}
        print("\n".join(clips_report({"task": result["task"], **found})))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _cmd_train(args) -> int:
    """``pretextgen train``: one summary line."""
    from .training.trainer import train

    result = train(task=args.task, data=args.data, out=args.out, source=args.source, samples=args.samples,
                   preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, resume=args.resume,
                   config=args.config, overrides=args.set or [], progress=False if args.no_progress else None,
                   device=args.device, as_built=args.as_built)
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # under torchrun: Gloo aborts at exit otherwise
            dist.destroy_process_group()
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
        print(result["line"])
    return 0


def _cmd_compare(args) -> int:
    """``pretextgen compare``: the ranked table."""
    from .training.compare import compare, table

    rows = compare(args.tasks, args.source, args.labeled, out=args.out, preset=args.preset, samples=args.samples,
                   epochs=args.epochs, progress=False if args.no_progress else None, video_source=args.video_source,
                   davis=args.davis, clips=args.clips, clips_samples=args.clips_samples)
    print("\n".join(table(rows)))
    print(f"(linear probe and kNN top-1 in %, best stage; gain: pretext minus random, best stages; "
          f"details in {Path(args.out) / 'compare.json'})")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(name)s: %(message)s")
    try:
        code = {"build": _cmd_build, "plan-sources": _cmd_plan_sources, "merge": _cmd_merge,
                "tasks": _cmd_tasks, "verify": _cmd_verify,
                "inspect": _cmd_inspect, "prior": _cmd_prior, "eval": _cmd_eval,
                "train": _cmd_train, "compare": _cmd_compare}[args.command](args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below, not at exit
        return code
    except PretextgenError as e:
        if args.debug:
            raise
        print(f"pretextgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pretextgen: interrupted; continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`pretextgen inspect OUT | head`): stop quietly, as other tools do;
        # stdout goes to /dev/null so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a path that cannot be made or written, a full disk: one line, no traceback
        if args.debug:
            raise
        what = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
        hint = "; fix it and rerun (with --resume to keep the shards already written)"
        hint = hint if args.command == "build" else ""
        print(f"pretextgen: error: {what}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
