"""What every registered task must do, on every backend that can run it here (STYLE habit 8).

Each contract is a function of a task's build; the tests below apply them to every name of
``list_tasks()`` x ``helpers.backend_cases``, so a task added to the registry is checked without
editing a list here (``test_a_task_registered_by_a_test_gets_every_contract`` shows it):

a. plans depend on (seed, i) alone: drawn twice, in two orders, they are the same JSON-native dicts
   (video tasks: a longer build with other workers starts with the same samples);
b. build -> verify round-trips: every field has its declared shape and dtype, and ``verify``
   redraws the plans and re-derives the samples with the reference within the backend's tolerance;
c. ``pretextgen inspect --sheet`` draws it;
d. a rerun with another number of workers writes the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import pretextgen
from helpers import backend_cases, temporary_task
from pretextgen.cli import main
from pretextgen.config import make_params
from pretextgen.registry import get_task, list_tasks
from pretextgen.shards import read_manifest, read_shard

SAMPLES = 8
SEED = 3
BATCH = 3  # DALI batches of 3, 3 and 2 in the one shard: a short last batch
# Every task with its shipped defaults: 8 samples build in under 2 s on CPUs (video: 1-4 s, mostly
# the clips' motion index, cached for the session).


@dataclass
class Built:
    """One build of a task on one (backend, device): what the contracts check."""

    task: str
    backend: str
    device: str
    out: Path
    manifest: dict
    kwargs: dict  # everything but out and workers: a rerun passes them again


def build_case(task: str, case: tuple[str, str], out: Path, workers: int = 2, samples: int = SAMPLES) -> Built:
    backend, device = case
    kwargs = dict(task=task, samples=samples, seed=SEED, backend=backend, device=device, batch_size=BATCH,
                  progress=False)
    m = pretextgen.build(out=out, workers=workers, **kwargs)
    return Built(task, backend, device, Path(out), m, kwargs)


def samples_of(out: Path):
    m = read_manifest(out)
    for rec in m["shards"]:
        yield from read_shard(out / rec["name"])


# ---------------------------------------------------------------- the contracts
def check_plans(b: Built, tmp: Path, sources) -> None:
    """(a) Plans are functions of (seed, i) alone and JSON-native."""
    t = get_task(b.task)
    p = make_params(t, b.manifest["params"])
    if t.input == "video":  # its plans need the clips' motion index: compare builds instead
        longer = build_case(b.task, (b.backend, b.device), tmp / "longer", workers=1, samples=SAMPLES + 3)
        first = {k: s["json"] for k, s in samples_of(b.out)}
        again = {k: s["json"] for k, s in samples_of(longer.out) if int(k) < SAMPLES}
        assert len(first) == SAMPLES
        assert first == again, f"{b.task}: samples 0..{SAMPLES - 1} change with the build's length or workers"
        return
    from pretextgen.plan import plan_sample

    root, good = sources

    def plans(seed, order):  # json.dumps: plans are JSON-native (NumPy integers or arrays raise here)
        drawn = {i: plan_sample(t, p, good, seed, i, root) for i in order}
        return [json.dumps({"source": drawn[i].source.path, **drawn[i].plan}, sort_keys=True) for i in sorted(drawn)]

    n = len(good) + 4  # past the first shuffled pass over the sources
    forward = plans(SEED, range(n))
    assert plans(SEED, reversed(range(n))) == forward, f"{b.task}: plans depend on the order they are drawn in"
    assert plans(SEED + 1, range(n)) != forward, f"{b.task}: the seed does not change the plans"


def check_round_trip(b: Built) -> None:
    """(b) Fields as declared; verify re-derives every sample within the backend's tolerance."""
    from pretextgen.verify import verify

    t = get_task(b.task)
    p = make_params(t, b.manifest["params"])
    assert b.manifest["complete"] and b.manifest["samples"] == SAMPLES
    keys = []
    for key, s in samples_of(b.out):
        keys.append(key)
        for f in t.fields:
            stored = [v for suffix, v in s.items() if suffix.rsplit(".", 1)[0] == f.name]
            assert len(stored) == 1, f"{b.task} sample {key}: field {f.name} stored {len(stored)} times"
            value = stored[0]
            assert value.shape == f.shape(p), f"{b.task} sample {key}: {f.name} {value.shape} != {f.shape(p)}"
            assert str(value.dtype) in f.dtype, f"{b.task} sample {key}: {f.name} is {value.dtype}, not {f.dtype}"
    assert [int(k) for k in keys] == list(range(SAMPLES))
    rep = verify(b.out, count=SAMPLES, seed=0)
    assert rep.ok, rep.lines()
    assert rep.samples == rep.rederived == SAMPLES, rep.lines()
    assert rep.replanned == (SAMPLES if t.input == "image" else 0), rep.lines()


def check_sheet(b: Built, tmp: Path) -> None:
    """(c) The contact sheet draws the build: a PNG of real panels, not a blank page."""
    import cv2

    png = tmp / "sheet.png"
    assert main(["inspect", str(b.out), "--sheet", str(png)]) == 0
    img = cv2.imread(str(png))
    assert img is not None, f"{b.task}: the sheet is not a readable PNG"
    assert img.ndim == 3 and min(img.shape[:2]) >= 100 and max(img.shape[:2]) <= 4000, img.shape
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 1000, f"{b.task}: a sheet without pictures"


def check_rerun(b: Built, tmp: Path) -> None:
    """(d) Reruns, with another number of workers, write the same bytes."""
    again = pretextgen.build(out=tmp / "again", workers=1, **b.kwargs)
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in b.manifest["shards"]]


# ---------------------------------------------------------------- every registered task
CASES = [pytest.param(name, *c.values, id=f"{name}-{c.id}", marks=c.marks)
         for name in list_tasks() for c in backend_cases(name)]
# Video tasks check their plans through two more builds (3-6 s each task).
FIRST_CASE = [pytest.param(name, *backend_cases(name)[0].values, id=name,
                           marks=[pytest.mark.slow] if get_task(name).input == "video" else [])
              for name in list_tasks()]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One build per (task, backend, device), shared by the contracts."""
    made: dict = {}

    def get(task: str, case: tuple[str, str]) -> Built:
        if (task, case) not in made:
            made[task, case] = build_case(task, case, tmp_path_factory.mktemp(f"{task}-{'-'.join(case)}") / "out")
        return made[task, case]

    return get


@pytest.mark.parametrize("task,case", FIRST_CASE)
def test_plans_depend_on_seed_and_index_only(builds, sources, tmp_path, task, case):
    check_plans(builds(task, case), tmp_path, sources)


@pytest.mark.parametrize("task,case", CASES)
def test_build_verifies_against_the_reference(builds, task, case):
    check_round_trip(builds(task, case))


@pytest.mark.parametrize("task,case", CASES)
def test_sheet_draws_it(builds, tmp_path, task, case):
    check_sheet(builds(task, case), tmp_path)


@pytest.mark.parametrize("task,case", CASES)
def test_reruns_are_byte_identical(builds, tmp_path, task, case):
    check_rerun(builds(task, case), tmp_path)


# ---------------------------------------------------------------- a task the registry gets from a test
@dataclass(frozen=True)
class ToyParams:
    size: int = 40
    crop_scale: tuple[float, float] = (0.5, 1.0)
    min_side: int = 32


def _toy_plan(p: ToyParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    from pretextgen.geometry import random_square, view

    box = random_square(rng, width, height, p.crop_scale)
    return {"crop_box": box, "label": int(rng.integers(2)), "views": [view(box, (p.size, p.size))]}


def _toy_task():
    from pretextgen.registry import Field, Task

    return Task(name="toy_crop", params=ToyParams, plan=_toy_plan,
                finish=lambda p, views, plan: {"image": np.ascontiguousarray(views[0])},
                fields=(Field("image", "png", "uint8", lambda p: (p.size, p.size, 3), "the crop", channels=True),),
                num_classes=lambda p: 2, summary="a square crop (a test's task)", paper="none")


@pytest.mark.parametrize("case", backend_cases(_toy_task()))
def test_a_task_registered_by_a_test_gets_every_contract(sources, tmp_path, case):
    """A task that only this test registers passes the same contracts, and is gone afterwards."""
    with temporary_task(_toy_task()):
        assert "toy_crop" in list_tasks()
        b = build_case("toy_crop", case, tmp_path / "out")
        check_plans(b, tmp_path, sources)
        check_round_trip(b)
        check_sheet(b, tmp_path)
        check_rerun(b, tmp_path)
    assert "toy_crop" not in list_tasks()
