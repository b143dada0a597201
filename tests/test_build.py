"""`pretextgen build` end to end: shards and manifest, bad inputs, determinism, resume after kill -9,
the CLI's errors, and every stored sample re-derived from its source through its JSON."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import pretextgen
from helpers import dali_difference, mean_abs_diff, requires_gpu
from pretextgen.backends import execute_plan, source_scale
from pretextgen.config import make_params
from pretextgen.errors import PretextgenError
from pretextgen.registry import get_task
from pretextgen.shards import stored_ext
from pretextgen.shards import file_sha256, read_manifest, read_shard
from pretextgen.sources import Source, load_rgb

CLI = [sys.executable, "-m", "pretextgen.cli"]


def rederive_all(out: Path, root: Path, exact: bool, tol: float = 4.0) -> int:
    """Re-execute every stored sample's JSON with the reference backend and compare; returns count."""
    m = read_manifest(out)
    t = get_task(m["task"])
    p = make_params(t, m["params"])
    n = 0
    for rec in m["shards"]:
        for key, s in read_shard(out / rec["name"]):
            meta = s["json"]
            assert int(key) == meta["index"] and s["cls"] == meta["label"]
            assert 0 <= meta["label"] < m["num_classes"]
            w, h = meta["source_size"]
            src = [x for x in _scan_one(root, meta["source"])][0]
            assert (src.width, src.height) == (w, h)
            fields = execute_plan(t, p, root, src, meta, meta.get("jpeg_scale", 1))
            for f in t.fields:
                stored = s[f"{f.name}.{stored_ext(f, m.get('pixels', 'png'))}"]
                if exact:
                    np.testing.assert_array_equal(stored, fields[f.name], err_msg=f"{key}.{f.name}")
                else:
                    assert mean_abs_diff(stored, fields[f.name]) < tol, key
            n += 1
    assert n == m["samples"]
    return n


def _scan_one(root, rel):
    from pretextgen.sources import check_source

    src, reason = check_source(root, rel, 1)
    assert reason is None, reason
    yield src


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "context"])
def test_build_on_skimage_photos_rederives_exactly(tmp_path, photos, task):
    m = pretextgen.build(task=task, out=tmp_path / task, samples=24, backend="opencv", workers=2, progress=False)
    assert m["complete"] and m["sources_used"] == len(photos[1]) and m["skipped"] == []
    assert sum(m["label_histogram"].values()) == 24
    for key in ("params", "seed", "version", "backend", "device", "source_digest", "shards", "samples_per_shard"):
        assert key in m
    on_disk = read_manifest(tmp_path / task)
    assert on_disk["shards"] == m["shards"]
    for rec in m["shards"]:
        assert file_sha256(tmp_path / task / rec["name"]) == rec["sha256"]
    assert rederive_all(tmp_path / task, photos[0], exact=True) == 24


@pytest.mark.parametrize("task", ["rotation", "inpainting"])
def test_npy_pixels_store_the_same_arrays_as_png(tmp_path, photos, task):
    """``--pixels npy`` stores the PNG fields raw: the same arrays (both are lossless), the other
    fields and the JSON unchanged, re-derivable, recorded in the manifest and kept on --resume."""
    from pretextgen.verify import verify

    kw = dict(task=task, samples=12, backend="opencv", workers=2, progress=False)
    png = pretextgen.build(out=tmp_path / "png", **kw)
    npy = pretextgen.build(out=tmp_path / "npy", pixels="npy", **kw)
    assert png["pixels"] == "png" and npy["pixels"] == "npy"
    assert [f for f in npy["fields"] if f.endswith(".png")] == [] and npy["fields"] != png["fields"]
    a = [s for r in png["shards"] for s in read_shard(tmp_path / "png" / r["name"])]
    b = [s for r in npy["shards"] for s in read_shard(tmp_path / "npy" / r["name"])]
    assert [k for k, _ in a] == [k for k, _ in b] and len(a) == 12
    for (_, x), (_, y) in zip(a, b):
        assert x["json"] == y["json"] and x["cls"] == y["cls"]
        assert sorted(n.rsplit(".", 1)[0] for n in x) == sorted(n.rsplit(".", 1)[0] for n in y)
        for name, value in x.items():
            if name.endswith(".png"):
                np.testing.assert_array_equal(value, y[name[:-4] + ".npy"])
    assert rederive_all(tmp_path / "npy", photos[0], exact=True) == 12
    assert verify(tmp_path / "npy", count=4).ok
    with pytest.raises(PretextgenError, match="pixels"):
        pretextgen.build(out=tmp_path / "npy", resume=True, **kw)  # the png default: another build


def test_jigsaw_permutation_file_beside_shards(tmp_path):
    m = pretextgen.build(task="jigsaw", out=tmp_path / "j", samples=4, backend="opencv", workers=1,
                         overrides={"permutations": 1000}, progress=False)
    ps = m["permutation_set"]
    perms = np.load(tmp_path / "j" / ps["file"])
    assert perms.shape == (1000, 9) and ps["size"] == 1000 and ps["min_hamming"] >= 4
    from pretextgen.permutations import set_digest

    assert set_digest(perms) == ps["sha256"]
    for _, s in read_shard(tmp_path / "j" / m["shards"][0]["name"]):
        assert s["json"]["permutation"] == perms[s["cls"]].tolist()


@pytest.mark.parametrize("backend", ["opencv", "dali"])
def test_reruns_are_byte_identical(tmp_path, backend):
    kw = dict(task="context", samples=40, backend=backend, device="cpu", progress=False, shard_bytes=1_200_000)
    a = pretextgen.build(out=tmp_path / "a", workers=1, **kw)
    b = pretextgen.build(out=tmp_path / "b", workers=2, **kw)  # more workers, same bytes
    assert len(a["shards"]) > 1
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    c = pretextgen.build(out=tmp_path / "c", seed=1, workers=1, **kw)
    assert a["shards"][0]["sha256"] != c["shards"][0]["sha256"]


@pytest.mark.parametrize("backend", ["opencv", "dali"])
def test_processes_write_the_same_shards(tmp_path, backend):
    """Shards split among 3 build processes are the bytes one process writes (CPU backends)."""
    kw = dict(task="jigsaw", samples=60, backend=backend, device="cpu", progress=False, shard_bytes=1_600_000, workers=2)
    one = pretextgen.build(out=tmp_path / "one", **kw)
    three = pretextgen.build(out=tmp_path / "three", processes=3, **kw)
    assert len(one["shards"]) >= 4 and three["complete"]
    assert one["shards"] == three["shards"] and one["label_histogram"] == three["label_histogram"]
    assert "processes" not in three  # not part of a build's identity: the bytes do not depend on it


@requires_gpu
@pytest.mark.gpu
def test_gpu_builds_are_the_same_bytes_in_any_number_of_processes(tmp_path):
    """On the GPU too, reruns and builds split among processes write the same shards (batches are
    cut at shard ends, so nvJPEG sees the same batches)."""
    kw = dict(task="jigsaw", samples=120, backend="dali", device="gpu", progress=False, shard_bytes=1_600_000,
              workers=4, batch_size=16)
    one = pretextgen.build(out=tmp_path / "one", processes=1, **kw)
    again = pretextgen.build(out=tmp_path / "again", processes=1, **kw)
    three = pretextgen.build(out=tmp_path / "three", processes=3, **kw)
    assert len(one["shards"]) >= 6 and one["samples_per_shard"] % 16
    assert one["shards"] == again["shards"] == three["shards"]


def test_dali_batches_never_span_two_shards(tmp_path, monkeypatch):
    """On a GPU nvJPEG may decode a sample differently depending on its batch, so a build's DALI
    batches are cut at shard ends: then a sample's batch is fixed by its shard and the batch size,
    whichever process makes the shard and whether it is resumed. Observed on the real DALI backend."""
    from pretextgen.backends import DaliBackend

    seen: list[list[int]] = []
    run_views = DaliBackend.run_views

    def spy(self, items):
        for batch, outs in run_views(self, items):
            seen.append([it.index for it in batch])
            yield batch, outs

    monkeypatch.setattr(DaliBackend, "run_views", spy)
    kw = dict(task="jigsaw", samples=50, backend="dali", device="cpu", progress=False, shard_bytes=1_600_000,
              workers=2, batch_size=8)
    m = pretextgen.build(out=tmp_path / "a", **kw)
    per = m["samples_per_shard"]
    assert per % 8 and len(m["shards"]) >= 3  # shard ends fall inside batches of 8 unless cut there
    want = [list(range(a, min(a + 8, b))) for s in range(len(m["shards"]))
            for b in [min((s + 1) * per, 50)] for a in range(s * per, b, 8)]
    assert seen == want
    # Resuming after the first shard makes the same batches for the others, so also the same bytes.
    shutil.rmtree(tmp_path / "b", ignore_errors=True)
    (tmp_path / "b").mkdir()
    first = m["shards"][0]["name"]
    shutil.copy(tmp_path / "a" / first, tmp_path / "b" / first)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({**m, "shards": m["shards"][:1], "complete": False}))
    seen.clear()
    r = pretextgen.build(out=tmp_path / "b", resume=True, **kw)
    assert seen == [b for b in want if b[0] >= per] and r["shards"] == m["shards"]


def test_ahead_keeps_order_bounds_its_lead_and_stops():
    """``parallel.ahead`` (DALI's feed is made one batch ahead in a thread): items come in order,
    never more than ``depth`` are made and not yet taken, an error comes after the items made
    before it, and closing the consumer stops the thread."""
    import threading

    from pretextgen.parallel import ahead

    made, taken = [], []

    def numbers(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise OSError(f"item {i} is unreadable")
            made.append(i)
            yield i

    for depth in (1, 3):
        made.clear(), taken.clear()
        for x in ahead(numbers(40), depth):
            time.sleep(0.002)  # the thread has time to run ahead, if it would
            assert len(made) - len(taken) <= depth + 1  # taken: the ones before x; plus x itself
            taken.append(x)
        assert taken == list(range(40))
    got = []
    with pytest.raises(OSError, match="item 7 is unreadable"):
        for x in ahead(numbers(20, fail_at=7)):
            got.append(x)
    assert got == list(range(7))
    made.clear()
    gen = ahead(numbers(10**9))
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert not [t for t in threading.enumerate() if t.name == "pretextgen-ahead"]
    assert len(made) <= 4  # it stopped: three taken, one made ahead


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, requires_gpu])])
@pytest.mark.parametrize("feed_ahead", [False, True])
def test_dali_feed_ahead_same_samples_and_errors_in_order(tmp_path, sources, feed_ahead, device):
    """DALI's feed made ahead in a thread (the default on GPUs) gives the samples of the inline feed,
    and a source file gone since planning fails the run with that file's error, after the samples
    before its batch, in order (no hang, no silent gap)."""
    from pretextgen.backends import DaliBackend
    from pretextgen.plan import plan_sample
    from pretextgen.config import load_params

    root, good = sources
    for s in good:
        shutil.copy(root / s.path, tmp_path / s.path)
    t = get_task("rotation")
    p = load_params(t)
    items = [plan_sample(t, p, good, 0, i) for i in range(24)]

    def run(items):
        backend = DaliBackend(t, p, tmp_path, device=device, batch_size=4, threads=1, encode=False,
                              feed_ahead=feed_ahead)
        try:
            for item, fields in backend.run(items):
                yield item.index, fields["image"].copy()
        finally:
            backend.close()

    got = list(run(items[:12]))
    inline = DaliBackend(t, p, tmp_path, device=device, batch_size=4, threads=1, encode=False, feed_ahead=False)
    want = [(it.index, f["image"]) for it, f in inline.run(items[:12])]
    inline.close()
    assert [k for k, _ in got] == list(range(12))
    for (_, a), (_, b) in zip(got, want):
        np.testing.assert_array_equal(a, b)
    gone = items[17].source.path
    first = min(it.index for it in items if it.source.path == gone)  # 15 photos: it comes back
    (tmp_path / gone).unlink()
    done = []
    with pytest.raises(FileNotFoundError, match=gone):
        for k, _ in run(items):
            done.append(k)
    # In order, and nothing from the first batch that needs the missing file, nor after it.
    assert done == list(range(len(done))) and len(done) <= first - first % 4


def test_shard_bytes_equal_tarfiles(tmp_path):
    """Our tar writer produces exactly what tarfile writes (USTAR, fixed owner and mtime), at every
    padding case, and the record's sha256 and size are the file's."""
    import io
    import tarfile

    from pretextgen.shards import write_shard

    rng = np.random.default_rng(0)
    samples = [(f"{i:09d}", {"blob.bin": rng.bytes(n), "cls": b"3", "json": b"{}"})
               for i, n in enumerate([0, 1, 511, 512, 513, 10240, 100_000])]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for suffix in sorted(members):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mtime, info.mode, info.uid, info.gid = len(members[suffix]), 0, 0o644, 0, 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(members[suffix]))
    rec = write_shard(tmp_path / "x.tar", samples)
    assert (tmp_path / "x.tar").read_bytes() == buf.getvalue()
    assert rec["sha256"] == file_sha256(tmp_path / "x.tar") and rec["bytes"] == len(buf.getvalue())
    assert [k for k, _ in read_shard(tmp_path / "x.tar")] == [k for k, _ in samples]


def test_auto_on_cpus_is_opencv(monkeypatch):
    from pretextgen import backends

    monkeypatch.setattr(backends, "gpu_count", lambda: 0)
    assert backends.resolve("auto", "auto") == ("opencv", "cpu")
    assert backends.resolve("auto", "cpu") == ("opencv", "cpu")
    assert backends.resolve("dali", "cpu") == ("dali", "cpu")


def test_opencv_threads_keep_order_and_state(sources):
    """Two OpenCV backends in one process, stepped in turn, one with a thread pool: each keeps its
    own task (the worker state is per run, not a module global) and yields items in order."""
    from pretextgen.backends import OpenCVBackend
    from pretextgen.plan import plan_sample
    from pretextgen.config import load_params

    root, good = sources
    runs = {}
    for name in ("rotation", "jigsaw"):
        t = get_task(name)
        p = load_params(t, overrides=["size=64"] if name == "rotation" else None)
        items = [plan_sample(t, p, good, 3, i) for i in range(40)]
        runs[name] = (t, p, items, [execute_plan(t, p, root, it.source, it.plan, source_scale(it.source, it.plan, True))
                                    for it in items])
    streams = [OpenCVBackend(t, p, root, workers=w, encode=False, chunk=4).run(items)
               for (t, p, items, _), w in zip(runs.values(), (2, 1))]
    for pairs in zip(*streams):
        for (item, fields), (t, p, items, ref) in zip(pairs, runs.values()):
            assert item.plan is items[item.index].plan and item.executed["backend"] == "opencv"
            for f in t.fields:
                np.testing.assert_array_equal(fields[f.name], ref[item.index][f.name])


# ---------------------------------------------------------------- large JPEGs, decoded at 1/s
@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory, photos):
    """Real photos as large JPEGs: scikit-image's retina (1411 px) cut to 1408x1056 and saved as is,
    the same with EXIF orientation 6 (shown rotated: 1056x1408), and hubble_deep_field 2x (2000x1744)."""
    root = tmp_path_factory.mktemp("large")
    retina = Image.open(photos[0] / "retina.jpg").convert("RGB").crop((0, 100, 1408, 1156))
    retina.save(root / "retina.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6
    retina.save(root / "retina_exif6.jpg", quality=92, exif=exif.tobytes())
    hubble = Image.open(photos[0] / "hubble_deep_field.jpg").convert("RGB")
    hubble.resize((2000, 1744), Image.BICUBIC).save(root / "hubble2x.jpg", quality=92)
    return root


def test_jpeg_scaled_decode_keeps_the_pixel_grid(large_jpegs):
    """At 1/s (s divides both sides) decoded pixel u is the source's pixels [s*u, s*u + s), whatever
    the EXIF orientation: the 1/s image matches the full one averaged over s x s blocks."""
    from pretextgen.sources import check_source, load_bgr

    for name, shown in [("retina.jpg", (1408, 1056)), ("retina_exif6.jpg", (1056, 1408))]:
        src, _ = check_source(large_jpegs, name, 1)
        assert (src.width, src.height) == shown
        full = load_bgr(large_jpegs, src)
        for s in (2, 4, 8, 16):
            small = load_bgr(large_jpegs, src, s)
            assert small.shape[:2] == (shown[1] // s, shown[0] // s)
            area = cv2.resize(full, small.shape[1::-1], interpolation=cv2.INTER_AREA)
            assert mean_abs_diff(small, area) < 1.0, (name, s)
            # The same blocks one source pixel to the right: a misplaced grid would match them better
            # (at s = 16 one pixel is too small a shift to tell).
            shifted = cv2.resize(full[:, 1:], small.shape[1::-1], interpolation=cv2.INTER_AREA)
            assert mean_abs_diff(small, area) < mean_abs_diff(small, shifted) or s == 16


def test_scaled_views_map_boxes_exactly(large_jpegs):
    """A box of s x n source pixels viewed at n pixels from the 1/s image is exactly that image's n
    pixels (bilinear samples land on pixel centres): the view covers the box its JSON records, to
    the pixel. A half-pixel error in the mapping fails here."""
    from pretextgen.geometry import scaled_view
    from pretextgen.sources import check_source, load_bgr

    src, _ = check_source(large_jpegs, "retina_exif6.jpg", 1)
    for s in (2, 4, 8):
        small = load_bgr(large_jpegs, src, s)
        for a, b, n, m in [(3, 5, 64, 64), (0, 0, 100, 60), (17, 40, 80, 90)]:
            box = [s * a, s * b, s * (a + n), s * (b + m)]
            np.testing.assert_array_equal(scaled_view(small, box, (n, m), s), small[b : b + m, a : a + n])


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "context"])
def test_large_jpegs_are_decoded_at_a_scale_and_rederive(tmp_path, large_jpegs, task):
    """By default the OpenCV backend decodes a JPEG at 1/s where a sample's views still get at least
    one reduced pixel per output pixel: the JSON says so (jpeg_scale), verify re-derives it exactly,
    and it stays within the backends' tolerance of the full-size decode; --full-decode turns it off."""
    from pretextgen.verify import verify

    kw = dict(task=task, source=large_jpegs, samples=24, backend="opencv", workers=2, progress=False)
    m = pretextgen.build(out=tmp_path / "scaled", **kw)
    assert m["jpeg_scaling"] is True
    scaled = 0
    for rec in m["shards"]:
        for key, s in read_shard(tmp_path / "scaled" / rec["name"]):
            meta = s["json"]
            src = next(_scan_one(large_jpegs, meta["source"]))
            scale = meta.get("jpeg_scale", 1)
            assert scale == source_scale(src, meta, True)
            if scale == 1:
                continue
            scaled += 1
            full = execute_plan(get_task(task), make_params(get_task(task), m["params"]), large_jpegs, src, meta, 1)
            for f in get_task(task).fields:
                assert mean_abs_diff(s[f"{f.name}.{f.ext}"], full[f.name]) < 4.0, (key, f.name)
    assert scaled >= 12
    assert rederive_all(tmp_path / "scaled", large_jpegs, exact=True) == 24
    assert verify(tmp_path / "scaled", count=8).ok
    off = pretextgen.build(out=tmp_path / "full", full_decode=True, **kw)
    assert off["jpeg_scaling"] is False
    assert not any("jpeg_scale" in s["json"] for r in off["shards"] for _, s in read_shard(tmp_path / "full" / r["name"]))
    assert rederive_all(tmp_path / "full", large_jpegs, exact=True) == 24


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def messy_source(tmp_path_factory, photos):
    """Real photos plus every kind of bad or unusual input."""
    root, _ = photos
    d = tmp_path_factory.mktemp("messy")
    rocket = (root / "rocket.jpg").read_bytes()
    chelsea = np.asarray(Image.open(root / "chelsea.png").convert("RGB"))
    (d / "good.jpg").write_bytes(rocket)
    (d / "truncated.jpg").write_bytes(rocket[: len(rocket) // 2])
    (d / "garbage.jpg").write_bytes(rocket[:400] + np.random.default_rng(0).bytes(3000))
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image\n")
    sub = d / "nested"
    sub.mkdir()
    shutil.copy(root / "camera.png", sub / "gray.png")
    Image.fromarray(chelsea).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    alpha = np.tile(np.linspace(0, 255, chelsea.shape[1]).astype(np.uint8), (chelsea.shape[0], 1))
    Image.fromarray(np.dstack([chelsea, alpha])).save(d / "alpha.png")
    cv2.imwrite(str(d / "deep16.png"), cv2.cvtColor(chelsea, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(chelsea[:40, :40]).save(d / "tiny.jpg")
    return d, chelsea


def test_linked_folders_are_listed_once(tmp_path, photos):
    """A link back to a parent (a loop) or a second link to a folder must not list its photos again:
    os.walk following links listed every photo 41 times through a loop, each copy a separate source."""
    from pretextgen.sources import list_files

    (tmp_path / "a" / "b").mkdir(parents=True)
    for k, name in enumerate(photos[1][:4]):
        shutil.copy(photos[0] / name, tmp_path / "a" / ("b" if k % 2 else "") / name)
    plain = list_files(tmp_path)
    os.symlink("..", tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a" / "b", tmp_path / "same_b")
    assert list_files(tmp_path) == plain and len(plain) == 4


def test_bad_inputs_are_skipped_with_reasons(tmp_path, messy_source):
    d, chelsea = messy_source
    for backend in ("opencv", "dali"):
        out = tmp_path / backend
        m = pretextgen.build(task="jigsaw", source=d, out=out, samples=30, backend=backend, device="cpu",
                             workers=2, progress=False)
        reasons = {s["source"]: s["reason"] for s in m["skipped"]}
        assert set(reasons) == {"truncated.jpg", "garbage.jpg", "empty.jpg", "notes.txt", "tiny.jpg"}
        assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.txt"]
        assert "truncated" in reasons["truncated.jpg"] and "too small" in reasons["tiny.jpg"]
        assert m["sources_used"] == 5 and m["source_files"] == 10
        used = {s["json"]["source"] for rec in m["shards"] for _, s in read_shard(out / rec["name"])}
        assert used == {"good.jpg", "nested/gray.png", "cmyk.jpg", "alpha.png", "deep16.png"}
        rederive_all(out, d, exact=backend == "opencv")


def test_unusual_formats_decode_correctly(messy_source):
    d, chelsea = messy_source
    src = lambda name, fmt, mode: Source(name, chelsea.shape[1], chelsea.shape[0], fmt, mode, True)  # noqa: E731
    np.testing.assert_array_equal(load_rgb(d, src("deep16.png", "PNG", "RGB")), chelsea)
    cmyk = load_rgb(d, src("cmyk.jpg", "JPEG", "CMYK"))
    assert mean_abs_diff(cmyk, chelsea) < 6  # JPEG of a CMYK round trip
    a = load_rgb(d, src("alpha.png", "PNG", "RGBA")).astype(float)
    assert a[:, 0].max() == 0 and mean_abs_diff(a[:, -1], chelsea[:, -1]) < 1  # composited on black


# ---------------------------------------------------------------- resume
def _cli_build(out, *extra):
    return CLI + ["build", "--task", "jigsaw", "--out", str(out), "--samples", "200", "--backend", "opencv",
                  "--workers", "1", "--shard-mb", "1.6", "--no-progress", *extra]


def _quiet(folder: Path, seconds: float = 1.5, limit: float = 30) -> None:
    """Wait until no file in ``folder`` changes for ``seconds``."""
    def state():
        return sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.exists())

    deadline, last, since = time.time() + limit, None, time.time()
    while time.time() < deadline:
        now = state()
        if now != last:
            last, since = now, time.time()
        elif time.time() - since > seconds:
            return
        time.sleep(0.1)
    raise AssertionError(f"{folder} still changing after {limit} s")


@pytest.mark.slow
@pytest.mark.parametrize("processes", ["1", "2"])
def test_resume_after_kill_9(tmp_path, processes):
    ref = tmp_path / "ref"
    subprocess.run(_cli_build(ref), check=True, capture_output=True)
    want = read_manifest(ref)["shards"]
    assert len(want) >= 10

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli_build(out, "--processes", processes), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if len(read_manifest(out)["shards"]) >= 3:
                break
        except (PretextgenError, json.JSONDecodeError):  # no manifest yet, or one being replaced
            pass
        time.sleep(0.05)
    if processes == "1":
        os.killpg(proc.pid, signal.SIGKILL)
    else:  # only the main process: its build processes must notice and stop by themselves
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _quiet(out)
    m = read_manifest(out)
    assert not m["complete"] and 3 <= len(m["shards"]) < len(want)
    # Damage one complete shard: resume must notice (sha256) and rewrite it.
    first = out / m["shards"][0]["name"]
    data = bytearray(first.read_bytes())
    data[1000] ^= 0xFF
    first.write_bytes(bytes(data))
    r = subprocess.run(_cli_build(out, "--resume", "--processes", processes), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = read_manifest(out)
    assert got["complete"] and got["shards"] == want
    assert not list(out.glob("*.tmp"))
    assert subprocess.run(_cli_build(out), capture_output=True, text=True).returncode == 2  # not empty, no --resume


# ---------------------------------------------------------------- CLI
def _err(args):
    r = subprocess.run(CLI + args, capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("pretextgen: error:") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "context"])
def test_dali_agrees_with_the_scaled_decode(large_jpegs, task):
    """DALI decodes large JPEGs at full size; the OpenCV backend at 1/s: the same plans still agree
    within the backends' tolerance (worst measured 2.1 grey levels on these photos)."""
    from pretextgen.plan import plan_sample
    from pretextgen.config import load_params
    from pretextgen.sources import list_files, scan

    t = get_task(task)
    p = load_params(t)
    good, _ = scan(large_jpegs, list_files(large_jpegs), t.min_side(p))
    items = [plan_sample(t, p, good, 0, i, large_jpegs) for i in range(12)]
    assert sum(source_scale(it.source, it.plan, True) > 1 for it in items) >= 6
    assert dali_difference(task, large_jpegs, good, "cpu", n=12, batch_size=4) < 4.0


def test_resumed_builds_decode_as_they_started(tmp_path, large_jpegs):
    """A build of 0.2.0 (no jpeg_scaling in its manifest: every JPEG decoded at full size) resumed by
    this version goes on decoding at full size, so its shards stay those of one uninterrupted build."""
    kw = dict(task="rotation", source=large_jpegs, samples=12, backend="opencv", workers=2, progress=False,
              shard_bytes=400_000)
    full = pretextgen.build(out=tmp_path / "full", full_decode=True, **kw)
    assert len(full["shards"]) >= 3
    old = {k: v for k, v in full.items() if k not in ("jpeg_scaling", "_seconds")}
    out = tmp_path / "old"
    out.mkdir()
    shutil.copy(tmp_path / "full" / full["shards"][0]["name"], out)
    (out / "manifest.json").write_text(json.dumps({**old, "shards": full["shards"][:1], "complete": False}))
    resumed = pretextgen.build(out=out, resume=True, **kw)  # without --full-decode
    assert resumed["jpeg_scaling"] is False and resumed["shards"] == full["shards"]


def test_python_api_from_a_script_without_main_guard(tmp_path, photos):
    """The README's Python example, run as a plain script (no ``if __name__ == "__main__":``): the
    scan's worker processes and the build processes must not run the script again (they did, failed
    and left the pool waiting forever)."""
    src = tmp_path / "photos"
    src.mkdir()
    rgb = np.asarray(Image.open(photos[0] / "astronaut.png").convert("RGB"))
    for k in range(70):  # more than one scan chunk of 64 files: the scan uses worker processes
        y, x = divmod(k, 10)
        Image.fromarray(rgb[y * 40 : y * 40 + 200, x * 30 : x * 30 + 200]).save(src / f"{k:03d}.jpg", quality=90)
    script = tmp_path / "make.py"
    script.write_text(
        "import pretextgen\n"
        f"m = pretextgen.build(task='jigsaw', source={str(src)!r}, out={str(tmp_path / 'out')!r}, samples=40,\n"
        "                     workers=2, processes=2, shard_bytes=1_600_000, progress=False)\n"
        "print('built', m['samples'], len(m['shards']))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)  # hung before
    assert r.returncode == 0 and "built 40" in r.stdout, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) >= 3  # several shards, so two build processes ran


def test_cli_output_into_a_closed_pipe_is_no_traceback():
    """`pretextgen tasks | head -1`: the reader leaves early; the command stops without a traceback."""
    proc = subprocess.Popen(CLI + ["tasks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the only read end: every write of the command now fails with EPIPE
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and "Traceback" not in err, err


def test_cli_errors_are_one_line(tmp_path, photos):
    assert "does not exist" in _err(["build", "--task", "jigsaw", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    assert "no files" in _err(["build", "--task", "jigsaw", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert "unknown task 'jigsaws'" in _err(["build", "--task", "jigsaws", "--out", str(tmp_path / "o")])
    assert "--batch-size must be at least 1" in _err(["build", "--task", "rotation", "--out", str(tmp_path / "o"),
                                                      "--batch-size", "0"])
    assert "--shard-mb must be above 0" in _err(["build", "--task", "rotation", "--out", str(tmp_path / "o"),
                                                 "--shard-mb", "-5"])
    assert "no task matches 'xyz*'; the tasks: colorization" in _err(["tasks", "xyz*"])
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.jpg").write_bytes((photos[0] / "rocket.jpg").read_bytes())
    assert "is inside --source" in _err(["build", "--task", "rotation", "--source", str(tmp_path / "src"),
                                         "--out", str(tmp_path / "src" / "shards")])
    assert "--seed must be 0 or more" in _err(["build", "--task", "rotation", "--out", str(tmp_path / "o"), "--seed", "-1"])
    (tmp_path / "a_file").write_text("")
    assert "Not a directory" in _err(["build", "--task", "rotation", "--out", str(tmp_path / "a_file" / "o")])
    assert "jigsaw.grid" in _err(["build", "--task", "jigsaw", "--out", str(tmp_path / "o"), "--set", "grid=1"])
    assert "unknown parameter 'tiles'" in _err(["build", "--task", "jigsaw", "--out", str(tmp_path / "o"), "--set", "tiles=3"])
    assert "jigsaw.tile" in _err(["build", "--task", "jigsaw", "--out", str(tmp_path / "o"), "--set", "tile=90"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.txt").write_text("x")
    assert "no usable image" in _err(["build", "--task", "rotation", "--source", str(tmp_path / "bad"), "--out", str(tmp_path / "o")])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gray_prob: 2\n")
    assert "jigsaw.gray_prob" in _err(["build", "--task", "jigsaw", "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert "--processes must be at least 1" in _err(["build", "--task", "jigsaw", "--out", str(tmp_path / "o"),
                                                      "--processes", "0"])


def test_cli_end_to_end(tmp_path):
    r = subprocess.run(CLI + ["tasks"], capture_output=True, text=True, check=True)
    for name in ("rotation", "jigsaw", "context"):
        assert any(line.startswith(name) for line in r.stdout.splitlines())
    r = subprocess.run(CLI + ["build", "--task", "rotation", "--out", str(tmp_path / "r"), "--samples", "8",
                              "--set", "size=64", "--set", "all_rotations=true", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "rotation: 8 samples in 1 shard(s)" in r.stdout
    m = read_manifest(tmp_path / "r")
    assert m["label_histogram"] == {"0": 2, "1": 2, "2": 2, "3": 2} and m["params"]["size"] == 64
    r = subprocess.run(CLI + ["build", "--help"], capture_output=True, text=True, check=True)
    assert "--resume" in r.stdout and "examples:" in r.stdout


# ---------------------------------------------------------------- real labeled photos
@pytest.mark.parametrize("task", ["rotation", "jigsaw", "context"])
def test_flowers_build_rederives(tmp_path, shared_images, task):
    src = shared_images / "flowers5" / "train"
    m = pretextgen.build(task=task, source=src, out=tmp_path / task, samples=40, backend="opencv", workers=2, progress=False)
    assert m["sources_used"] > 2000 and not m["skipped"]
    assert rederive_all(tmp_path / task, src, exact=True) == 40


def test_config_defaults_mirror_dataclasses():
    from pretextgen.config import load_params
    from pretextgen.registry import list_tasks

    for name in list_tasks():
        t = get_task(name)
        assert load_params(t) == t.params(), f"pipelines/configs/{name}.yaml differs from {t.params.__name__}"


def test_scan_cache_follows_file_changes(tmp_path, photos):
    from pretextgen.sources import cache_dir, scan_cached

    root, _ = photos
    d = tmp_path / "src"
    d.mkdir()
    shutil.copy(root / "rocket.jpg", d / "a.jpg")
    shutil.copy(root / "coffee.png", d / "b.png")
    first = scan_cached(d, ["a.jpg", "b.png"], 32, 1, False)
    assert len(first[0]) == 2 and list(cache_dir().glob("scan-*.json"))
    assert scan_cached(d, ["a.jpg", "b.png"], 32, 1, False) == first
    (d / "b.png").write_bytes(b"broken now")
    good, skipped = scan_cached(d, ["a.jpg", "b.png"], 32, 1, False)
    assert [s.path for s in good] == ["a.jpg"] and skipped[0]["source"] == "b.png"
