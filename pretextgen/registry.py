"""The one registry of pretext tasks.

A task module registers a :class:`Task`: its params dataclass, its pure ``plan`` function, the
``views`` it needs cut from the source (boxes resized to a fixed size: the only part of a sample
that a backend computes), and ``finish``, the NumPy code that turns those views into the sample's
fields on every backend. The CLI, the builder, the tests and the benchmark find everything here.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import PretextgenError
from .shards import stored_ext


@dataclass(frozen=True)
class Field:
    """One stored member of a sample: ``<key>.<name>.<ext>``; shape may depend on the params."""

    name: str
    ext: str  # "npy" or "png"
    dtype: str
    shape: Callable[[Any], tuple]
    doc: str
    # How `verify` compares it with its re-derivation when backends may differ by interpolation:
    # "pixels" (grey levels after a light blur), "bins" (class ids: share of entries that differ;
    # with a trailing axis of nearest bins, the nearest), "ordinal" (ordered bins: compared like
    # grey levels), or "weights:<bins field>" (soft weights, compared where that field's bins agree).
    compare: str = "pixels"
    # How the loader hands it to torch: ``channels``: stored ...xHxWxC (an image, a stack of them, or
    # a per-pixel vector such as ab or soft bins), moved to ...xCxHxW when channels_first; ``ids``:
    # class ids or indices, handed over as int64 (what cross_entropy and gather take).
    channels: bool = False
    ids: bool = False


@dataclass(frozen=True)
class TrainerSpec:
    """How a task trains (read by ``pretextgen.train``; declaring it imports no torch).

    ``recipe``: "module:Class" of its ``pretextgen.training.recipe.Recipe``. ``presets``: per preset
    ("cpu", "gpu"), the ``TrainConfig`` values. ``samples``: per preset, the sample params a build
    for that preset uses (``pretextgen compare`` builds with them). ``eval_input``: what the trunk
    sees of a labeled RGB image at evaluation ("rgb", "L", "L+ab"), stated in the eval table."""

    recipe: str
    presets: dict
    samples: dict = field(default_factory=dict)
    eval_input: str = "rgb"


@dataclass(frozen=True)
class Task:
    name: str
    params: type  # a dataclass; defaults mirrored in pipelines/configs/<name>.yaml
    plan: Callable  # plan(params, rng, width, height) -> JSON-native dict with "label" and "views"
    finish: Callable  # finish(params, views: list[np.ndarray], plan) -> {field name: array}
    fields: tuple[Field, ...]
    num_classes: Callable[[Any], int]
    summary: str
    paper: str
    input: str = "image"  # "image" or "video"
    min_side: Callable[[Any], int] = field(default=lambda p: p.min_side)
    # Optional: samples_per_plan > 1 lets one plan make several samples (all four rotations).
    samples_per_plan: Callable[[Any], int] = field(default=lambda p: 1)
    # Optional: extra artefacts written beside the shards (the jigsaw permutation set):
    # prepare(params, out) -> manifest entries; load_prepared(params, out, header) reads them back
    # in a worker of a distributed build (instead of computing them again).
    prepare: Callable | None = None
    load_prepared: Callable | None = None
    # Video tasks (input="video"): a pretextgen.video.plans.VideoHooks; their plan is
    # plan(params, rng, index: VideoIndex, part) and their views name clip frames.
    video: Any = None
    # Optional: one class per plan (exemplar's surrogate classes, contrastive's groups): plan gets
    # index=j, the plan's number, which is its label; num_classes is then the number of plans.
    label_is_plan_index: bool = False
    # Optional: plans that depend on the source's pixels (exemplar seeds where gradients are high):
    # source_stats(params, rgb) is computed from the decoded source and passed to plan as stats=.
    source_stats: Callable | None = None
    # Optional: a pass over the usable sources before planning (colorization's ab prior):
    # select_sources(params, root, sources, out, workers, progress) -> (kept, skipped, manifest extras).
    select_sources: Callable | None = None
    # Optional: a per-view conversion every backend applies after the resize (sRGB -> Lab):
    # view_post(uint8 view) -> array in NumPy, dali_view_post(DALI node) -> node in the DALI graph.
    view_post: Callable | None = None
    dali_view_post: Callable | None = None
    # What makes a source and a sample worth training on, in a sentence (``pretextgen tasks`` shows
    # it). Image tasks share the scan's rules and the builder's flat-view redraw (IMAGE_USABLE).
    usable: str = ""
    # What other parts need of a task, declared here rather than in tables keyed by its name:
    # draw(fields, plan, ctx) -> (RGB uint8 panel, caption) for ``pretextgen inspect`` (None: every
    # image-like field, generically); built from ``pretextgen.drawing``, imported inside the function.
    draw: Callable | None = None
    # torch_finish(params, views: list of (B, ...) tensors, plans) -> {field: (B, ...) tensor}: the
    # same samples as ``finish`` for whole batches where DALI's views are (live GPU loader, GPU builds).
    torch_finish: Callable | None = None
    # Whether DALI GPU builds use torch_finish by default (``DaliBackend(finish="auto")``): only where
    # it was faster than the host finish (BENCHMARKS.md).
    finish_on_device: bool = False
    # {backend: grey levels}: this task's bound in ``verify`` where it differs from the backend's
    # (a backend's ``tolerance``); None: the backends' own bounds.
    tolerance: dict | None = None
    # baseline(path, rng, params) -> (arrays, label): the task's samples made the way the papers'
    # loaders do (plain PIL + NumPy), the reference the benchmarks time pretextgen against.
    baseline: Callable | None = None
    # How the task trains (``TrainerSpec``); None: no bundled trainer (every built-in task has one).
    trainer: TrainerSpec | None = None
    # Set by tasks whose targets are per pixel (their ``cls`` is always 0, so a class histogram says
    # nothing): pixel_targets(out, manifest, params) -> the lines ``pretextgen inspect`` prints in
    # the histogram's place: what the target is and how it is spread, from what the build folder
    # holds (a prior file, the params, at most ``inspect.summary.SAMPLED`` samples).
    pixel_targets: Callable | None = None

    def __post_init__(self):
        if not self.usable:
            object.__setattr__(self, "usable", IMAGE_USABLE if self.input == "image" else VIDEO_USABLE)
        if self.finish_on_device and self.torch_finish is None:
            raise ValueError(f"task {self.name!r}: finish_on_device needs a torch_finish")

    def doc_fields(self, pixels: str = "png") -> list[str]:
        return [f"{f.name}.{stored_ext(f, pixels)}" for f in self.fields]


IMAGE_USABLE = ("sources that decode without a warning and are not one colour; plans whose views all lie in "
                "one-colour areas are drawn again elsewhere")
VIDEO_USABLE = "clips that decode and are not one colour throughout (flat_std, 8 frames checked)"
_TASKS: dict[str, Task] = {}
# Where each source kind lives (a module holding ``KIND``: list, prepare, plan, execute, rederive);
# ``Task.input`` names one. Imported when first asked for, so that images never load video code.
SOURCE_KINDS = {"image": "pretextgen.images", "video": "pretextgen.video.kind"}


def source_kind(name: str):
    """The source kind ``name`` (``pretextgen.images.ImageKind`` or ``pretextgen.video.kind.VideoKind``)."""
    import importlib

    try:
        return importlib.import_module(SOURCE_KINDS[name]).KIND
    except KeyError:
        raise PretextgenError(f"unknown source kind {name!r}; known: {', '.join(SOURCE_KINDS)}") from None


def register_task(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    if not dataclasses.is_dataclass(task.params):
        raise TypeError(f"task {task.name!r}: params must be a dataclass")
    _TASKS[task.name] = task
    return task


def _load_all() -> None:
    # Importing the built-in tasks registers them; by name, as plugins are: the tasks import this
    # module, never the other way round.
    import importlib

    importlib.import_module("pretextgen.tasks")


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a glob pattern, sorted."""
    _load_all()
    return sorted(n for n in _TASKS if fnmatch.fnmatch(n, pattern))


def get_task(name: str) -> Task:
    _load_all()
    try:
        return _TASKS[name]
    except KeyError:
        raise PretextgenError(
            f"unknown task {name!r}; choose one of: {', '.join(sorted(_TASKS))}"
        ) from None
