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
# The source tree as installed: its packages (invsr, invsr_wire, invsr_worker, invsr_cli) are its folders.
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
timeout 170 python3 bench/gpu/check.py --json "$OUT/gpu-check.json" 2>&1 | tee "$OUT/gpu-check.log"
timeout 390 python3 bench/gpu/run.py --deadline 300 --json "$OUT/gpu-bench.json" 2>&1 | tee "$OUT/gpu-bench.log"
