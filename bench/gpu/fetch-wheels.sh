#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (its image has PyTorch, transformers and the rest, but
# not diffusers or pyzmq, and it cannot reach a registry) into .whl/, which bench/gpu/device.sh installs.
# Versions: those of our CI environment that accept the machine's huggingface_hub 1.33 and Python 3.12.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata==8.7.0 pyzmq==27.3.0
ls -l .whl
