"""``pretextgen compare``: build, train and evaluate several tasks on the same photos, and rank them by
what their trunks learned against a random trunk of the same architecture.

For each task: a build from ``source`` with the preset's sample params (``TrainerSpec.samples``),
a training run at the preset (``TrainerSpec.presets``), then ``evaluate`` on ``labeled``. Each step
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


def compare(tasks: list[str], source, labeled, out="compare", preset: str = "cpu", samples: int = 20000,
            epochs: int | None = None, seed: int = 0, progress: bool | None = None) -> list[dict]:
    """One row per task: its evaluation (``evaluate``'s dict) with the build and training times;
    rows ranked by the best pretext stage's gain over the best random stage, in linear top-1."""
    from ..builder import build
    from ..registry import get_task
    from .probe import evaluate, round_accuracies
    from .recipe import recipe_class
    from .trainer import train

    out = Path(out)
    rows = []
    for k, name in enumerate(tasks, 1):
        def step(what: str) -> None:  # which task and step, beside the steps' own bars or lines
            if progress is not False:
                print(f"compare {k}/{len(tasks)}: {name}: {what}", file=sys.stderr, flush=True)

        task = get_task(name)
        if task.trainer is None:
            raise PretextgenError(f"task {name!r} has no trainer; choose among the image tasks")
        here = out / name
        t0 = time.perf_counter()
        build_dir, run_dir, result = here / "build", here / "run", here / "eval.json"
        manifest = build_dir / "manifest.json"
        if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):
            step(f"build ({samples:,} samples, the {preset} preset's sample params) -> {build_dir}")
            build(name, build_dir, source=source, samples=samples, seed=seed, progress=progress,
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
            ev = round_accuracies(json.loads(result.read_text()))
            ev.setdefault("pretext_accuracy_meaning", recipe_class(task).accuracy)
        else:
            step(f"eval on {labeled}")
            ev = evaluate(run_dir / "checkpoint.pt", labeled, json_path=result, progress=progress)
            times["eval_seconds"] = round(time.perf_counter() - t2, 1)
        times_file.write_text(json.dumps(times) + "\n")
        rows.append({**ev, **times, "train_summary": round_summary(summary)})
    for r in rows:
        stage, acc = _best(r["pretext"])
        _, random_acc = _best(r["random"])
        # "gain" is evaluate's per stage; the ranking's is the best stages' (an older eval.json: no interval)
        r["best_stage"], r["best_gain"] = stage, round(acc - random_acc, DECIMALS)
    rows.sort(key=lambda r: r["best_gain"], reverse=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return rows


def round_summary(summary: dict) -> dict:
    """``train``'s summary with its shares (the pretext accuracy, the data-wait share of the wall
    time) rounded to ``DECIMALS`` places, as compare.json holds them."""
    return {**summary, **{k: round(float(summary[k]), DECIMALS) for k in ("accuracy", "data_wait")
                          if summary.get(k) is not None}}


def table(rows: list[dict]) -> list[str]:
    """The ranked comparison as Markdown lines, then one line per task saying what its pretext
    accuracy measures (it differs per task: a classifier's top-1, a nearest-neighbour share...)."""
    lines = [f"| task | pretext acc | best stage | linear: pretext / random / pixels | gain [{100 * CONFIDENCE:.0f}% "
             "interval] | kNN: pretext / random / pixels | train s |", "|---|---:|---|---|---:|---|---:|"]
    for r in rows:
        stage, acc = _best(r["pretext"])
        rstage, racc = _best(r["random"])
        knn_p = max(s["knn"] for s in r["pretext"].values())
        knn_r = max(s["knn"] for s in r["random"].values())
        pa = "" if r.get("pretext_accuracy") is None else f"{100 * r['pretext_accuracy']:.1f}"
        ci = r.get("best", {}).get("gain_ci_points")
        ci = f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""
        lines.append(f"| {r['task']} | {pa} | {stage} | {100 * acc:.1f} / {100 * racc:.1f} / "
                     f"{100 * r['pixels']['linear']:.1f} | {100 * (acc - racc):+.1f}{ci} | {100 * knn_p:.1f} / "
                     f"{100 * knn_r:.1f} / {100 * r['pixels']['knn']:.1f} | {r['train_seconds']:.0f} |")
    lines.append("")
    lines += [f"- pretext acc, {r['task']}: {r.get('pretext_accuracy_meaning') or 'not stated by its recipe'}"
              for r in rows]  # a Markdown list: one line each, also where the table is rendered
    return lines
