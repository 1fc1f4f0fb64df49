#!/usr/bin/env bash
# Everything the GPU machine is needed for, in one call of under 10 minutes (a device command may run 10):
# the checks (check.py), then the benchmark (run.py). Results and logs go to $OUT; commit them under
# bench/results/. Each script writes its JSON as it goes, so a timeout still leaves what was measured.
#
#   bash bench/gpu/fetch-wheels.sh                          # here, once: diffusers and pyzmq into .whl/
#   device run: command "bash bench/gpu/device.sh", carry [".whl"], timeout_s 600
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/invsr-gpu-results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# The source tree as installed: its packages (invsr, invsr.wire, invsr_server.worker, invsr_server.cli) are its folders.
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
# Issue 18's figures first, the longest last; about 9 minutes in all, each capped so that the next still runs:
# the bridge on this machine's cores (echo through workers on ipc, on loopback TCP, and signing every byte);
# a cold and a warm compiled start in fresh processes, then the reference's way, ours and ours compiled (whose
# compiling finds the cold start's caches); then the checks, less the compile check (the starts compile).
# The rows of earlier runs not repeated here: `run.py` with its default --rows, and `check.py` in full.
timeout 80 python3 bench/run.py --parts bridge --runs 3 --json "$OUT/gpu-bridge.json" 2>&1 | tee "$OUT/gpu-bridge.log"
timeout 360 python3 bench/gpu/run.py --starts --rows reference,default,compiled --deadline 290 \
    --json "$OUT/gpu-bench.json" 2>&1 | tee "$OUT/gpu-bench.log"
timeout 120 python3 bench/gpu/check.py --skip compile --json "$OUT/gpu-check.json" 2>&1 | tee "$OUT/gpu-check.log"
