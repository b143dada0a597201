"""``pretextgen compare``: build, train and evaluate several tasks on the same photos (and clips), and
rank them by what their trunks learned against a random trunk of the same architecture.

For each task: a build from ``source`` (photos; video tasks: ``video_source``, clips) with the
preset's sample params (``TrainerSpec.samples``), a training run at the preset
(``TrainerSpec.presets``), then ``evaluate`` on ``labeled`` and, for video tasks, the DAVIS and
unseen-clips evaluations where their folders are given. Each step
is skipped when its output is already there (a build with a complete manifest, a run whose
checkpoint reached its last epoch, an evaluation JSON), so an interrupted comparison continues.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import PretextgenError
from .probe import CONFIDENCE, DECIMALS


def _best(stages: dict) -> tuple[str, float]:
    """(stage, linear top-1) of the stage whose linear probe is best."""
    name = max(stages, key=lambda s: stages[s]["linear"])
    return name, stages[name]["linear"]


VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


def _check_source(kind: str, source, flag: str) -> None:
    """One clear line when ``source`` holds files of the other kind only (photos for a video task,
    clips for an image task), told by their extensions before any build starts."""
    from ..sources import list_source
    from .probe import IMAGE_EXTS

    _, files = list_source(source)
    suffixes = [Path(f).suffix.lower() for f in files]
    photos, clips = sum(x in IMAGE_EXTS for x in suffixes), sum(x in VIDEO_EXTS for x in suffixes)
    if kind == "video" and clips == 0 and photos:
        raise PretextgenError(f"{flag} {source} holds photos ({photos}), no clips: the video tasks build from clips")
    if kind == "image" and photos == 0 and clips:
        raise PretextgenError(f"{flag} {source} holds clips ({clips}), no photos: the image tasks build from photos; "
                              "give the clips as --video-source")


def _plan(tasks, source, video_source, labeled, davis, clips):
    """The tasks, checked before any work: each has a trainer, a source of its kind and at least one
    evaluation; returns {task: its source}."""
    from ..registry import get_task
    from .clips_eval import TASKS as CLIPS_TASKS

    sources, checked = {}, set()
    for name in tasks:
        task = get_task(name)
        if task.trainer is None:
            raise PretextgenError(f"task {name!r} has no trainer")
        video = task.input == "video"
        flag, src = ("--video-source", video_source) if video else ("--source", source)
        if src is None:
            raise PretextgenError(f"{name} builds from {'clips' if video else 'photos'}: give {flag} DIR")
        if flag not in checked:
            _check_source(task.input, src, flag)
            checked.add(flag)
        if labeled is None and not (video and (davis is not None or (clips is not None and name in CLIPS_TASKS))):
            ways = ("--labeled or --davis" + (" or --clips" if name in CLIPS_TASKS else "")) if video else "--labeled"
            raise PretextgenError(f"{name}: nothing to evaluate it on; give {ways}")
        sources[name] = src
    return sources


def compare(tasks: list[str], source=None, labeled=None, out="compare", preset: str = "cpu", samples: int = 20000,
            epochs: int | None = None, seed: int = 0, progress: bool | None = None, video_source=None, davis=None,
            clips=None, clips_samples: int = 512) -> list[dict]:
    """One row per task: its evaluation (``evaluate``'s dict on ``labeled``; for video tasks also
    ``davis`` and ``clips``, as ``pretextgen eval --davis / --clips`` give them) with the build and
    training times. Image tasks build from ``source`` (photos), video tasks from ``video_source``
    (clips). Rows with an image probe come first, ranked by the best pretext stage's gain over the
    best random stage in linear top-1; the others by their J&F gain on DAVIS, else their gain on
    unseen clips."""
    from ..builder import build
    from ..registry import get_task
    from .clips_eval import TASKS as CLIPS_TASKS
    from .clips_eval import evaluate_clips
    from .davis import evaluate_davis
    from .probe import evaluate, round_accuracies
    from .recipe import recipe_class
    from .trainer import train

    sources = _plan(tasks, source, video_source, labeled, davis, clips)
    out = Path(out)
    rows = []
    for k, name in enumerate(tasks, 1):
        def step(what: str) -> None:  # which task and step, beside the steps' own bars or lines
            if progress is not False:
                print(f"compare {k}/{len(tasks)}: {name}: {what}", file=sys.stderr, flush=True)

        task = get_task(name)
        here = out / name
        t0 = time.perf_counter()
        build_dir, run_dir, result = here / "build", here / "run", here / "eval.json"
        manifest = build_dir / "manifest.json"
        if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):
            step(f"build ({samples:,} samples, the {preset} preset's sample params) -> {build_dir}")
            build(name, build_dir, source=sources[name], samples=samples, seed=seed, progress=progress,
                  overrides=dict(task.trainer.samples.get(preset, {})), resume=build_dir.exists())
        t1 = time.perf_counter()
        times_file = here / "times.json"
        times = json.loads(times_file.read_text()) if times_file.exists() else {}
        times.setdefault("build_seconds", round(t1 - t0, 1))
        step(f"train ({preset} preset) -> {run_dir}")
        summary = train(data=build_dir, out=run_dir, preset=preset, epochs=epochs, progress=progress,
                        resume=(run_dir / "checkpoint.pt").exists())
        t2 = time.perf_counter()
        times["train_seconds"] = round(times.get("train_seconds", 0.0) + t2 - t1, 1)  # over resumed parts too
        if result.exists():  # maybe written by an older pretextgen: rounded here, its meaning filled in
            ev = json.loads(result.read_text())
            ev = round_accuracies(ev) if "pretext" in ev else ev
            ev.setdefault("pretext_accuracy_meaning", recipe_class(task).accuracy)
        else:
            ev = {"task": name, "pretext_accuracy_meaning": recipe_class(task).accuracy}
            if labeled is not None:
                step(f"eval on {labeled}")
                ev = evaluate(run_dir / "checkpoint.pt", labeled, progress=progress)
            if task.input == "video" and davis is not None:
                step(f"eval on DAVIS {davis}")
                ev["davis"] = {k: v for k, v in evaluate_davis(run_dir / "checkpoint.pt", davis, seed=seed,
                                                               progress=progress).items() if k != "task"}
            if task.input == "video" and clips is not None and name in CLIPS_TASKS:
                step(f"eval on unseen clips {clips}")
                ev["clips"] = {k: v for k, v in evaluate_clips(run_dir / "checkpoint.pt", clips, clips_samples,
                                                               seed=seed, progress=progress).items() if k != "task"}
            result.write_text(json.dumps(ev, indent=1) + "\n")
            times["eval_seconds"] = round(time.perf_counter() - t2, 1)
        times_file.write_text(json.dumps(times) + "\n")
        rows.append({**ev, **times, "train_summary": round_summary(summary)})
    for r in rows:
        # "gain" is evaluate's per stage; the ranking's is the best stages' (an older eval.json: no interval)
        if r.get("pretext"):
            stage, acc = _best(r["pretext"])
            r["best_stage"], r["best_gain"] = stage, round(acc - _best(r["random"])[1], DECIMALS)
        elif "davis" in r:
            r["best_stage"], r["best_gain"] = "davis J&F", round(r["davis"]["pretext"]["JF"] - r["davis"]["random"]["JF"],
                                                                 DECIMALS)
        else:
            r["best_stage"], r["best_gain"] = "unseen clips", round(r["clips"]["pretext"] - r["clips"]["random"], DECIMALS)
    rows.sort(key=lambda r: (bool(r.get("pretext")), "davis" in r, r["best_gain"]), reverse=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return rows


def round_summary(summary: dict) -> dict:
    """``train``'s summary with its shares (the pretext accuracy, the data-wait share of the wall
    time) rounded to ``DECIMALS`` places, as compare.json holds them."""
    return {**summary, **{k: round(float(summary[k]), DECIMALS) for k in ("accuracy", "data_wait")
                          if summary.get(k) is not None}}


def table(rows: list[dict]) -> list[str]:
    """The ranked comparison as Markdown lines, then one line per task saying what its pretext
    accuracy measures (it differs per task: a classifier's top-1, a nearest-neighbour share...).
    Columns for DAVIS and unseen clips appear when a row has them."""
    davis, clips = any("davis" in r for r in rows), any("clips" in r for r in rows)
    head = (f"| task | pretext acc | best stage | linear: pretext / random / pixels | gain [{100 * CONFIDENCE:.0f}% "
            "interval] | kNN: pretext / random / pixels |")
    rule = "|---|---:|---|---|---:|---|"
    if davis:
        head, rule = head + " DAVIS J&F: pretext / random / pixels / flow |", rule + "---|"
    if clips:
        head, rule = head + " unseen clips: pretext / random / baseline |", rule + "---|"
    lines = [head + " train s |", rule + "---:|"]
    for r in rows:
        pa = "" if r.get("pretext_accuracy") is None else f"{100 * r['pretext_accuracy']:.1f}"
        if r.get("pretext"):
            stage, acc = _best(r["pretext"])
            _, racc = _best(r["random"])
            knn_p = max(s["knn"] for s in r["pretext"].values())
            knn_r = max(s["knn"] for s in r["random"].values())
            ci = r.get("best", {}).get("gain_ci_points")
            ci = f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""
            probe = (f"{stage} | {100 * acc:.1f} / {100 * racc:.1f} / {100 * r['pixels']['linear']:.1f} | "
                     f"{100 * (acc - racc):+.1f}{ci} | {100 * knn_p:.1f} / {100 * knn_r:.1f} / "
                     f"{100 * r['pixels']['knn']:.1f}")
        else:
            probe = f"{r['best_stage']} | | {100 * r['best_gain']:+.1f} |"
        row = f"| {r['task']} | {pa} | {probe} |"
        if davis:
            d = r.get("davis")
            row += (f" {100 * d['pretext']['JF']:.1f} / {100 * d['random']['JF']:.1f} / {100 * d['pixels']['JF']:.1f}"
                    f" / {100 * d['flow']['JF']:.1f} |") if d else " |"
        if clips:
            c = r.get("clips")
            row += f" {100 * c['pretext']:.1f} / {100 * c['random']:.1f} / {100 * c['baseline']:.1f} |" if c else " |"
        lines.append(row + f" {r['train_seconds']:.0f} |")
    lines.append("")
    lines += [f"- pretext acc, {r['task']}: {r.get('pretext_accuracy_meaning') or 'not stated by its recipe'}"
              for r in rows]  # a Markdown list: one line each, also where the table is rendered
    return lines
