"""``pretextgen inspect RUN_DIR`` on a training run: what it trained, how far it got, how its last
epoch went, what ``pretextgen eval`` said (RUN_DIR/eval.json, when written there) and where its
curves are (``training.curves``; redrawn from metrics.csv when the picture is missing)."""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from ..errors import PretextgenError


def is_run(folder) -> bool:
    """True for a ``pretextgen train`` run folder: config.json beside checkpoint.pt or metrics.csv,
    and no manifest.json (a build's)."""
    folder = Path(folder)
    return ((folder / "config.json").is_file() and not (folder / "manifest.json").exists()
            and ((folder / "checkpoint.pt").is_file() or (folder / "metrics.csv").is_file()))


def run_lines(run_dir) -> list[str]:
    """The run's summary as printed lines (see the module docstring); draws curves.png if missing."""
    from ..training.curves import CURVES, number, read_metrics, write_curves

    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / "config.json").read_text())
    except ValueError:
        info = None
    cfg = info.get("config") if isinstance(info, dict) else None
    if not isinstance(cfg, dict):
        raise PretextgenError(f"{run_dir / 'config.json'} is not the config.json `pretextgen train` writes "
                              "(no \"config\" in it)")
    lines = [f"run: {run_dir}",
             f"task: {info.get('task', '?')} (preset {cfg.get('preset', '?')}, trunk {cfg.get('trunk', '?')}, "
             f"batch size {cfg.get('batch_size', '?')}, lr {cfg.get('lr', '?')})",
             f"data: {info.get('data', '?')}" + (f" ({info['samples_per_epoch']:,} samples per epoch)"
                                                  if isinstance(info.get("samples_per_epoch"), int) else "")]
    rows = read_metrics(run_dir / "metrics.csv")
    epochs = [r for r in rows if r.get("kind") == "epoch" and not math.isnan(number(r.get("epoch")))]
    planned = cfg.get("epochs", "?")
    last = epochs[-1] if epochs else {}
    done = int(number(last["epoch"])) if last else 0
    stopped = f" ({planned - done} to go; a stopped run continues with its train command plus --resume)" \
        if isinstance(planned, int) and done < planned else ""
    lines.append(f"epochs: {done}/{planned} done" + (f", {last.get('step')} steps" if last else "") + stopped)
    if last:
        loss, acc, rate, wait = (number(last.get(k)) for k in ("loss", "accuracy", "samples_per_s", "data_wait"))
        shown = [(loss, f"loss {loss:.4f}"),
                 (0.0, "pretext accuracy " + ("not recorded" if math.isnan(acc) else f"{acc:.1%}")),
                 (rate, f"{rate:,.0f} samples/s"), (wait, f"data wait {wait:.1%}")]
        lines.append("last epoch: " + ", ".join(text for value, text in shown if not math.isnan(value)))
    lines.append(_eval_line(run_dir))
    if (run_dir / CURVES).is_file():
        lines.append(f"curves: {run_dir / CURVES}")
    elif rows:
        lines.append(f"curves: {write_curves(run_dir)} (drawn now from metrics.csv)")
    else:
        lines.append("curves: none yet (metrics.csv holds no rows)")
    return lines


def _eval_line(run_dir: Path) -> str:
    """The best pretext stage against the random trunk, from RUN_DIR/eval.json (``probe.evaluate``)."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return (f"eval: none in this folder (pretextgen eval --checkpoint {shlex.quote(str(run_dir))} "
                f"--data LABELED_DIR --json {shlex.quote(str(path))})")
    try:
        result = json.loads(path.read_text())
        b = result["best"]
        line = (f"eval: best pretext stage {b['stage']} {b['linear']:.1%} linear; random trunk's best "
                f"{b['random_best_stage']} {b['random_best']:.1%}; gain {b['gain_points']:+.1f} points "
                + (f"[{b['gain_ci_points'][0]:+.1f}, {b['gain_ci_points'][1]:+.1f}] "
                   f"({100 * result['bootstrap']['confidence']:.0f}% interval) "
                   if "gain_ci_points" in b else f"(standard error {b['stderr_points']:.1f}) ")
                + f"on {result.get('data', '?')}")
    except (ValueError, KeyError, TypeError):
        return f"eval: {path} is not what `pretextgen eval --json` writes; rerun the evaluation"
    return line + ("; likely shortcut (pretextgen eval explains)" if result.get("shortcut") else "")
