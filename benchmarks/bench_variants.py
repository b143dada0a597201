"""Sample and training variants of one task, each judged the way `pretextgen compare` judges a task:
build from photos, train at the CPU preset, evaluate on labeled photos against three random trunks.
Each variant also gets the shortcut audit of its build and its pretext accuracy on a build made from
held-out photos (memorising a fixed build shows as a training accuracy far above that one).

    python benchmarks/bench_variants.py --task jigsaw --source cifar10/train --held-out cifar10/val \\
        --labeled cifar10 --out /tmp/variants --samples 10000 \\
        --variant "3x3-72:crop=72,tile=16,gap=4" --variant "2x2-native:grid=2,crop=32,tile=12,gap=3,permutations=24"

A variant is NAME:KEY=VALUE,... of sample params (YAML values); ``train.KEY=VALUE`` items are
training settings (``--set`` of `pretextgen train`), ``live=N`` trains on N fresh live samples per
epoch instead of the build. One JSON line per variant is appended to OUT/variants.jsonl; finished
steps are reused, so an interrupted run continues.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml


def parse_variant(text: str) -> tuple[str, dict, dict, int | None]:
    name, _, items = text.partition(":")
    sample, train, live = {}, {}, None
    for item in filter(None, items.split(",")):
        key, _, value = item.partition("=")
        value = yaml.safe_load(value)
        if key == "live":
            live = int(value)
        elif key.startswith("train."):
            train[key[len("train."):]] = value
        else:
            sample[key] = value
    return name, sample, train, live


def run_variant(args, name: str, sample: dict, train_set: dict, live: int | None) -> dict:
    from pretextgen.audit import audit
    from pretextgen.builder import build
    from pretextgen.errors import PretextgenError
    from pretextgen.registry import get_task
    from pretextgen.training.curves import read_metrics
    from pretextgen.training.probe import evaluate, held_out_accuracy, pretext_accuracy
    from pretextgen.training.trainer import train

    task = get_task(args.task)
    params = {**task.trainer.samples["cpu"], **sample}
    here = Path(args.out) / name
    times = {}

    def done(d: Path) -> bool:
        m = d / "manifest.json"
        return m.exists() and json.loads(m.read_text()).get("complete", False)

    t0 = time.perf_counter()
    if not done(here / "build"):
        build(args.task, here / "build", source=args.source, samples=args.samples, seed=0, progress=False,
              overrides=params, resume=(here / "build").exists())
    if not done(here / "held_out"):
        build(args.task, here / "held_out", source=args.held_out, samples=args.held_out_samples, seed=1,
              progress=False, overrides=params, resume=(here / "held_out").exists())
    times["build_seconds"] = round(time.perf_counter() - t0, 1)
    run = here / "run"
    t1 = time.perf_counter()
    config = {k: v for k, v in train_set.items() if k != "epochs"}
    epochs = train_set.get("epochs", args.epochs)
    if not (run / "done").exists():
        if live:
            train(task=args.task, source=args.source, samples=live, out=run, preset="cpu", epochs=epochs,
                  overrides={**config, **{f"sample.{k}": v for k, v in params.items()}}, progress=False,
                  resume=(run / "checkpoint.pt").exists())
        else:
            train(data=here / "build", out=run, preset="cpu", epochs=epochs, overrides=config, progress=False, as_built=True,
                  resume=(run / "checkpoint.pt").exists())
        (run / "done").write_text("")
    times["train_seconds"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    ev_path = here / "eval.json"
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else \
        evaluate(run / "checkpoint.pt", args.labeled, json_path=ev_path, progress=False)
    times["eval_seconds"] = round(time.perf_counter() - t2, 1)
    try:
        au = audit(here / "build", max_samples=1000)
        found = {"chance": au.chance, **au.accuracy}
    except PretextgenError as e:  # no label to predict (colorization, mae)
        found = {"none": str(e)}
    last = [r for r in read_metrics(run / "metrics.csv") if r.get("kind") == "epoch"][-1]
    return {"variant": name, "params": params, "train": train_set, "live": live, "samples": args.samples,
            "pretext_accuracy": pretext_accuracy(run), "held_out_accuracy": held_out_accuracy(run / "checkpoint.pt", here / "held_out"),
            "audit": found, "best": ev.get("best"), "protocol": ev.get("protocol"),
            "pretext": ev["pretext"], "random": ev["random"], "pixels": ev["pixels"],
            "alignment_uniformity": ev.get("alignment_uniformity"),
            "train_alignment_uniformity": {k: last.get(k) for k in ("alignment", "uniformity")}, **times}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--source", required=True, help="photos for the build (their labels unused)")
    ap.add_argument("--held-out", required=True, help="other photos, for the held-out pretext accuracy")
    ap.add_argument("--labeled", required=True, help="labeled folder (train/ and val/) for the evaluation")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--held-out-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, help="default: the preset's")
    ap.add_argument("--variant", action="append", required=True, help="NAME:KEY=VALUE,... (see above)")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for text in args.variant:
        row = run_variant(args, *parse_variant(text))
        with open(Path(args.out) / "variants.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        b = row["best"] or {}
        cues = {k: v for k, v in row["audit"].items() if k not in ("chance", "none")}
        audit_text = f"audit best {max((v, k) for k, v in cues.items())} chance {row['audit']['chance']:.3f}" if cues \
            else "no audit (no label)"
        print(f"{row['variant']}: pretext {row['pretext_accuracy']}, held-out {row['held_out_accuracy']}, "
              f"best {b.get('stage')} gain {b.get('gain_points')} {b.get('gain_ci_points')}, {audit_text}, "
              f"train {row['train_seconds']} s, eval {row['eval_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
