#!/usr/bin/env bash
# The prepared check of the CUDA path, for a session that is lent a GPU machine (issue 6).
#
# That machine has torch 2.11 and torchvision but neither torch-fidelity nor POT, and no network.
# Here, once:  echo /.whl/ >> .git/info/exclude
#              python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#                -d .whl torch-fidelity==0.4.0 POT==0.9.7.post1
# Then run it there (device tool, carry [".whl"], timeout ~500 s):  bash benchmarks/gpu_check.sh
# It writes timings and both leaderboards under $OUT (or /tmp/gpu-check).
set -euo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# zoo pins torch for CPU machines; here the image's CUDA torch is the one to use
python3 -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"

run() {  # name, then the command: wall time into timings.txt
  local name=$1; shift
  local start=$(date +%s%N)
  "$@" > "$out/$name.log" 2>&1
  echo "$name $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$out/timings.txt"
}
# the same digits smoke bench on CUDA and on the CPU: rows must agree in kind, FID close
run bench-cuda zoo bench --plugins heat,pme --dataset digits --budget smoke --device cuda --out "$out/cuda"
run bench-cpu  zoo bench --plugins heat,pme --dataset digits --budget smoke --device cpu --out "$out/cpu"
# DDP with nccl on the same code path (one GPU here: world size 1 through torchrun)
run ddp python3 -m torch.distributed.run --nproc-per-node 1 --no-python zoo train --law heat \
    --network unet:base=16 --dataset digits --steps 300 --batch-size 128 --device cuda --out "$out/ddp"
# the training, sampling and blob-flow tests, with CUDA visible
run tests python3 -m pytest -q tests/test_training.py tests/test_blob.py tests/test_samplers.py
cp "$out/cuda/leaderboard.md" "$out/leaderboard-cuda.md"; cp "$out/cpu/leaderboard.md" "$out/leaderboard-cpu.md"
