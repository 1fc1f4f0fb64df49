"""Compiled networks kept in our cache folder (invsr/compile_cache.py): a fresh process with the same key loads
what an earlier one compiled, and compiles nothing again; another torch, device, dtype, layout, tile, batch or
network never loads it. The real compile runs on a small network, in fresh processes with empty PyTorch caches,
so that what a warm start finds can only be our bundle (the tiny InvSR networks take minutes to compile on a
busy 2-core machine: bench/compiled_start.py times those, and bench/gpu/run.py the full-size ones)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from invsr import compile_cache
from invsr.pipeline import InvSRPipeline

# A child process: load the bundle of the key given (if any), compile and run a small network, save when nothing
# was loaded, and say what PyTorch's graph cache did.
CHILD = r"""
import json, sys, torch
from torch._dynamo.utils import counters
from invsr import compile_cache
key = json.loads(sys.argv[1])
loaded = compile_cache.load(key)
torch.manual_seed(0)
network = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
with torch.no_grad():
    out = torch.compile(network, dynamic=False)(torch.ones(3, 16))
saved = None if loaded else compile_cache.save(key)
graphs = counters["inductor"]
print(json.dumps({"loaded": loaded, "saved": str(saved) if saved else None, "out": out.sum().item(),
                  "hits": graphs["fxgraph_cache_hit"], "misses": graphs["fxgraph_cache_miss"]}))
"""


def start(key: dict, tmp_path, name: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / f"torch-caches-{name}"))  # empty each time
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(key)], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def small_key(**changes) -> dict:
    network = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    key = compile_cache.compile_key([network], torch.device("cpu"), torch.float32, 128, 1, False)
    return dict(key, **changes)


def test_a_fresh_process_loads_the_bundle_of_its_key_and_compiles_nothing_again(tmp_path, monkeypatch):
    monkeypatch.setenv("INVSR_CACHE", str(tmp_path / "ours"))
    key = small_key()
    cold = start(key, tmp_path, "cold")
    assert not cold["loaded"] and cold["misses"] > 0 and cold["hits"] == 0
    assert cold["saved"] == str(compile_cache.bundle_path(key))
    assert os.stat(cold["saved"]).st_mode & 0o777 == 0o600  # compiled code: the user's own
    warm = start(key, tmp_path, "warm")
    assert warm["loaded"] and warm["hits"] > 0 and warm["misses"] == 0
    assert warm["out"] == cold["out"]
    other = start(dict(key, batch=2), tmp_path, "other")  # another key: compiled anew, as on a first start
    assert not other["loaded"] and other["misses"] > 0 and other["hits"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"torch": "2.14.0"},
        {"triton": "3.9.0"},
        {"device": "cuda NVIDIA H200 sm90 cuda13.0"},
        {"device": "cuda NVIDIA H100 80GB HBM3 sm90 cuda13.0"},
        {"dtype": "bf16"},
        {"channels_last": True},
        {"tile": 96},
        {"batch": 8},
        {"invsr": "0.0.0"},
    ],
)
def test_any_other_key_names_another_bundle_and_never_loads_a_foreign_one(tmp_path, monkeypatch, change):
    monkeypatch.setenv("INVSR_CACHE", str(tmp_path))
    key, other = small_key(), small_key(**change)
    assert compile_cache.bundle_path(other) != compile_cache.bundle_path(key)
    assert compile_cache.bundle_path(small_key()) == compile_cache.bundle_path(key)  # and the same key, the same
    foreign = compile_cache.MAGIC + json.dumps(other, sort_keys=True).encode() + b"\n" + b"a bundle"
    path = compile_cache.bundle_path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(foreign)  # a file of another key where this key's should be: not loaded
    assert not compile_cache.load(key)
    path.write_bytes(b"garbage")
    assert not compile_cache.load(key)


def test_the_pipelines_key_follows_its_dtype_layout_and_networks(tiny_weights, pipeline):
    key = pipeline.compile_key()
    assert (key["device"].split()[0], key["dtype"], key["tile"], key["batch"]) == ("cpu", "fp32", 128, 1)
    assert key["torch"] == torch.__version__
    bf16 = InvSRPipeline.load(tiny_weights, device="cpu", dtype="bf16")
    assert bf16.compile_key()["dtype"] == "bf16" and bf16.compile_key()["networks"] != key["networks"]
    bf16.optimize(compile=False, channels_last=True)
    assert bf16.compile_key()["channels_last"]
