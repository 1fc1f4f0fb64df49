"""Device and dtype choice: 'auto' picks what this machine has, and impossible requests say why."""

import pytest
import torch

from invsr import image_io
from invsr.devices import cpu_threads, free_memory, resolve_device, resolve_dtype
from invsr.errors import DeviceError


def test_auto_falls_back_to_what_exists():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.type == expected


def test_cpu_runs_in_fp32_by_default_and_accepts_explicit_dtypes():
    cpu = resolve_device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("fp16", cpu) == torch.float16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(DeviceError, match="use --device cpu"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(DeviceError, match="device"):
        resolve_device(name)


def test_unknown_dtype_is_refused():
    with pytest.raises(DeviceError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_cpu_memory_counts_the_page_cache_the_kernel_gives_back(tmp_path, monkeypatch):
    """The automatic tile follows this number, and the result follows the tile: reading files (which
    fills the page cache and lowers MemFree) must not change it. MemAvailable includes that cache."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       33554432 kB\nMemFree:         1048576 kB\n"
        "MemAvailable:   25165824 kB\nCached:         20971520 kB\n"
    )
    monkeypatch.setattr(image_io, "MEMINFO", meminfo)
    assert free_memory(torch.device("cpu")) == 24 * 2**30


def test_cpu_memory_falls_back_where_there_is_no_meminfo(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MEMINFO", tmp_path / "absent")
    assert free_memory(torch.device("cpu")) > 0


def test_cpu_threads_gives_the_callers_thread_count_back_even_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with cpu_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="inside"), cpu_threads(other):
        raise ValueError("inside")
    assert torch.get_num_threads() == before
