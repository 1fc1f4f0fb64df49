#!/usr/bin/env bash
# Everything the GPU machine is needed for, in one call (about 10 minutes): the checks (check.py), then
# the benchmark (run.py). Results and logs go to $OUT; commit them under bench/results/.
#
#   bash bench/gpu/fetch-wheels.sh                          # here, once: diffusers and pyzmq into .whl/
#   device run: command "bash bench/gpu/device.sh", carry [".whl"], timeout_s 600
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/invsr-gpu-results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# The source tree as installed: invsr/ is the package, server/ is installed as invsr_server (setup.cfg).
mkdir -p /tmp/packages && ln -sfn "$PWD/server" /tmp/packages/invsr_server
export PYTHONPATH="/tmp/site:$PWD:/tmp/packages"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
timeout 240 python3 bench/gpu/check.py --json "$OUT/gpu-check.json" 2>&1 | tee "$OUT/gpu-check.log"
timeout 360 python3 bench/gpu/run.py --json "$OUT/gpu-bench.json" 2>&1 | tee "$OUT/gpu-bench.log"
