"""Run checkpoints: ``RUN_DIR/checkpoint.pt``, written by the trainer at the end of every epoch.

A checkpoint is a plain dict (``torch.save``; read back with ``weights_only=True``, so nothing in it
runs code when loaded):

- ``format`` ("pretextgen-run/1"), ``version`` (pretextgen's), ``task`` (name), ``params`` (the
  samples' params dict: the build's manifest ``params``, or the live dataset's), ``config`` (the
  resolved ``TrainConfig`` as a dict), ``epoch`` (epochs completed), ``step`` (optimiser steps);
- ``model`` (the recipe's ``state_dict``: trunk, heads and buffers such as colorization's prior
  weights), ``optimizer``, ``scheduler``, ``loader`` (``Loader.state_dict()``), ``rng`` (torch, CUDA,
  NumPy and Python states), ``extra`` (free, e.g. the data the run read).

``load_run(path)`` rebuilds ``(task, params, config, recipe)`` from it (the evaluation's entry).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import PretextgenError

FORMAT = "pretextgen-run/1"


def rng_state() -> dict:
    """torch, CUDA (when initialised), NumPy (global) and Python ``random`` states, as plain data."""
    np_state = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(),
             "numpy": {"bit_generator": np_state["bit_generator"],
                       "state": {"key": [int(v) for v in np_state["state"]["key"]], "pos": int(np_state["state"]["pos"])},
                       "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.asarray(n["state"]["key"], np.uint32), "pos": n["state"]["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run(path, *, task: str, params: dict, config: dict, model: dict, epoch: int, step: int,
             optimizer: dict | None = None, scheduler: dict | None = None, loader: dict | None = None,
             extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (``path.tmp`` renamed over ``path``) with the current RNG states."""
    from ..version import __version__

    path = Path(path)
    state = {"format": FORMAT, "version": __version__, "task": task, "params": params, "config": config,
             "epoch": int(epoch), "step": int(step), "model": model, "optimizer": optimizer,
             "scheduler": scheduler, "loader": loader, "rng": rng_state(), "extra": extra or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path, device="cpu") -> dict:
    """The checkpoint dict at ``path`` (tensors mapped to ``device``); one-line errors for a missing
    file or one that is not a pretextgen run."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise PretextgenError(f"checkpoint {path} does not exist; train one with `pretextgen train ... --out RUN_DIR`")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, not a torch file, or unsafe pickle content
        # torch's own message advises weights_only=False, which would run the file's code: not ours to give.
        why = ("a torch file holding Python objects, which pretextgen does not load" if "Weights only load failed"
               in str(e) else "not a file torch.save wrote, or a truncated one")
        raise PretextgenError(f"{path} is not a pretextgen checkpoint ({why}); give the folder of a "
                              "`pretextgen train` run or its checkpoint.pt") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PretextgenError(f"{path} is not a pretextgen checkpoint (a torch file, but not a run that "
                              "`pretextgen train` wrote)")
    return state


def load_weights(recipe, state: dict, path) -> None:
    """``recipe.load_state_dict(state["model"])``; weights that do not fit the recipe (a run of a
    version whose recipe had other layers) are one line that names both versions."""
    from ..version import __version__

    try:
        recipe.load_state_dict(state["model"])
    except RuntimeError:
        raise PretextgenError(f"{path}: its {state['task']} weights were written by pretextgen "
                              f"{state.get('version', '?')} and do not fit this version's ({__version__}) recipe; "
                              f"train it again, or read it with pretextgen {state.get('version', '?')}") from None


def load_run(checkpoint_path, device="cpu"):
    """``(task, params, config, recipe)`` of a checkpoint: ``task`` the registry's ``Task`` (its
    ``.name``, ``.trainer.eval_input``), ``params`` the samples' params dataclass, ``config`` the
    run's ``TrainConfig``, ``recipe`` its ``Recipe`` with the trained weights, on ``device``, in
    eval mode (batch-norm statistics frozen). ``checkpoint_path`` may be the run folder."""
    from ..config import make_params
    from ..registry import get_task
    from .recipe import TrainConfig, build_recipe

    state = read_checkpoint(checkpoint_path)
    task = get_task(state["task"])
    if task.trainer is None:
        raise PretextgenError(f"task {task.name!r} has no trainer in this version of pretextgen")
    params = make_params(task, state["params"])
    config = TrainConfig(**state["config"])
    recipe = build_recipe(task, params, config)
    load_weights(recipe, state, checkpoint_path)
    return task, params, config, recipe.to(device).eval()
