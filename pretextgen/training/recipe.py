"""The recipe interface: what a task trains, and how its trunk is read at evaluation.

A task declares ``Task.trainer = TrainerSpec(recipe="pretextgen.training.recipes.spatial:Rotation", ...)`` in its
own file (no torch import there); ``build_recipe`` imports the class when training starts. A recipe
is an ``nn.Module`` holding ``trunk`` (a ``models.Trunk``: the part that is evaluated) and its
head, and implements:

- ``loss(batch) -> (loss, metrics)``: ``batch`` is the loader's dict (fields channels first,
  class ids int64, ``label`` int64); ``metrics`` may hold ``"accuracy"`` (pretext accuracy in [0, 1]).
- ``accuracy`` (a class attribute): what that ``"accuracy"`` measures, in a phrase, or why there is
  none; ``pretextgen eval`` and ``compare`` print it beside the number. It lives on the recipe, not
  on the task, because the recipe's ``loss`` is what computes the number (exemplar's recipe scores
  nearest neighbours, not the paper's classifier): a recipe swapped in states its own.
- ``eval_input(images) -> x``: ``images`` uint8 (B, 3, H, W) RGB labeled images, already resized to
  ``eval_size``; returns them as the trunk saw its samples (float, normalised; L for colorization,
  L and ab for split-brain...). The evaluation's raw-pixel baseline reads this ``x`` too.
- ``eval_features(x) -> {stage: tensor}``: every stage's map (B, C, h, w) or vector (B, D) for the
  input ``eval_input`` made (split-brain concatenates its two halves' features per stage).
- ``eval_size``: the side labeled images are resized to (the size the trunk trained on).

``forward(batch)`` is ``loss(batch)``; ``prepare(data_dir, dataset)`` reads what a build wrote beside
its shards before training. Every task's recipe is in ``recipes`` (a file per family).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TrainConfig:
    """How a run trains (a preset's values, then ``--config``, then ``--set``)."""

    preset: str = "cpu"
    trunk: str = "small"  # models.TRUNKS
    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd (momentum, nesterov) or adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0  # linear warm-up, then cosine decay to 0 (per step)
    amp: bool = False  # bfloat16/float16 autocast on CUDA
    num_workers: int = 1  # DataLoader workers
    threads: int = 0  # torch intra-op threads while training (0: torch's default, all cores)
    seed: int = 0  # model initialisation and the loader's shuffle
    extra: dict = field(default_factory=dict)  # recipe-specific settings (temperature, widths...)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Recipe(nn.Module):
    """Base class; see the module docstring. ``config`` is the run's TrainConfig, ``params`` the
    samples' params (the task's params dataclass, as the build made them)."""

    trunk: nn.Module
    accuracy: str = ""  # what loss()'s "accuracy" measures (see the module docstring); "": not stated

    def __init__(self, params, config: TrainConfig):
        super().__init__()
        self.params, self.config = params, config

    def loss(self, batch: dict):
        raise NotImplementedError

    def forward(self, batch: dict):
        """``loss(batch)``: the trainer calls the module (so that a DDP wrapper sees a forward)."""
        return self.loss(batch)

    def prepare(self, data_dir, dataset) -> None:
        """Called once by the trainer before the first step (not by ``load_run``): ``data_dir`` is
        the build folder (None for live samples), ``dataset`` the loader's dataset. Recipes read what
        a build writes beside its shards here (colorization's ab_prior.json) into buffers, so that
        the checkpoint carries it."""

    @property
    def eval_size(self) -> int:
        raise NotImplementedError

    def eval_input(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def eval_features(self, x: torch.Tensor) -> dict:
        raise NotImplementedError

    def eval_protocols(self) -> dict:
        """How labeled images reach the trunk at evaluation, by name; the first is the default.
        ``{"size": N}``: the whole image resized to N px. ``{"size": N, "cells": n, "patch": p,
        "step": s, "origin": o}``: the image at N px cut into n x n patches of p px (the one at row
        i, column j starts at o + i s, o + j s), each through ``eval_input``, features averaged
        (Kolesnikov et al. 2019's evaluation of patch models)."""
        return {"whole": {"size": int(self.eval_size)}}


def resolve_config(task, preset: str = "cpu", values: dict | None = None) -> TrainConfig:
    """The task's preset (``TrainerSpec.presets``), updated by ``values``; unknown keys are errors."""
    from ..errors import ConfigError

    spec = task.trainer
    if spec is None:
        raise ConfigError(f"task {task.name!r} has no trainer yet")
    if preset not in spec.presets:
        raise ConfigError(f"--preset {preset!r}: {task.name} has presets {', '.join(spec.presets)}")
    data = {**spec.presets[preset], **(values or {}), "preset": preset}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{task.name} training: unknown setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    return TrainConfig(**data)


def recipe_class(task) -> type:
    """The task's recipe class (``TrainerSpec.recipe``, "module:Class"), imported, not built."""
    module, _, name = task.trainer.recipe.partition(":")
    return getattr(importlib.import_module(module), name)


def build_recipe(task, params, config: TrainConfig) -> Recipe:
    """The task's recipe class (``TrainerSpec.recipe``, "module:Class"), made for ``params``, with
    weights initialised from ``config.seed``."""
    cls = recipe_class(task)
    torch.manual_seed(config.seed)
    return cls(params, config)
