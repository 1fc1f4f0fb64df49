"""Which pyzmq wheel fits GIMP's Python, on each platform GIMP ships a Python of its own.

The file names are the registry's own: every wheel of pyzmq 27.3.0 on PyPI for CPython 3.9 to 3.15 (and
PyPy), as listed on https://pypi.org/simple/pyzmq/ on 2026-11-30; the descriptions of GIMP's Pythons are
what gimp_python.PROBE prints there (sysconfig.get_platform(), platform.machine(), the C library's or macOS's
version).
"""

import shlex
import socket
import subprocess
import sys

import pytest

from invsr_gimp.wheel_tags import PythonTarget, best_wheel, pip_download_arguments, platform_tags, rank

TAGS_27_3 = """
cp39-cp39-macosx_10_15_universal2 cp39-cp39-manylinux2014_i686.manylinux_2_17_i686
cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64 cp39-cp39-manylinux_2_26_aarch64.manylinux_2_28_aarch64
cp39-cp39-musllinux_1_2_aarch64 cp39-cp39-musllinux_1_2_i686 cp39-cp39-musllinux_1_2_x86_64 cp39-cp39-win32
cp39-cp39-win_amd64 cp39-cp39-win_arm64
cp310-cp310-macosx_10_15_universal2 cp310-cp310-manylinux_2_26_aarch64.manylinux_2_28_aarch64
cp310-cp310-manylinux_2_26_x86_64.manylinux_2_28_x86_64 cp310-cp310-manylinux_2_28_i686
cp310-cp310-musllinux_1_2_aarch64 cp310-cp310-musllinux_1_2_i686 cp310-cp310-musllinux_1_2_x86_64
cp310-cp310-win32 cp310-cp310-win_amd64 cp310-cp310-win_arm64
cp311-cp311-macosx_10_15_universal2 cp311-cp311-manylinux_2_26_aarch64.manylinux_2_28_aarch64
cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64 cp311-cp311-manylinux_2_28_i686
cp311-cp311-musllinux_1_2_aarch64 cp311-cp311-musllinux_1_2_i686 cp311-cp311-musllinux_1_2_x86_64
cp311-cp311-win32 cp311-cp311-win_amd64 cp311-cp311-win_arm64
cp312-abi3-macosx_10_15_universal2 cp312-abi3-manylinux_2_26_aarch64.manylinux_2_28_aarch64
cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64 cp312-abi3-manylinux_2_28_i686
cp312-abi3-manylinux_2_38_riscv64.manylinux_2_39_riscv64 cp312-abi3-musllinux_1_2_aarch64
cp312-abi3-musllinux_1_2_i686 cp312-abi3-musllinux_1_2_x86_64 cp312-abi3-win32 cp312-abi3-win_amd64
cp312-abi3-win_arm64
cp313-cp313-android_24_arm64_v8a cp313-cp313-android_24_x86_64 cp314-cp314-android_24_arm64_v8a
cp314-cp314-android_24_x86_64
cp314-cp314t-macosx_10_15_universal2 cp314-cp314t-manylinux_2_26_aarch64.manylinux_2_28_aarch64
cp314-cp314t-manylinux_2_26_x86_64.manylinux_2_28_x86_64 cp314-cp314t-manylinux_2_28_i686
cp314-cp314t-musllinux_1_2_x86_64 cp314-cp314t-win32 cp314-cp314t-win_amd64 cp314-cp314t-win_arm64
cp315-cp315t-macosx_10_15_universal2 cp315-cp315t-manylinux_2_26_x86_64.manylinux_2_28_x86_64
cp315-cp315t-win_amd64
pp310-pypy310_pp73-macosx_10_15_x86_64 pp310-pypy310_pp73-macosx_11_0_arm64
pp310-pypy310_pp73-manylinux_2_26_x86_64.manylinux_2_28_x86_64 pp310-pypy310_pp73-win_amd64
pp311-pypy311_pp80-macosx_11_0_arm64 pp311-pypy311_pp80-win_amd64
"""
WHEELS = [f"pyzmq-27.3.0-{tags}.whl" for tags in TAGS_27_3.split()]

WINDOWS_GIMP = PythonTarget("cpython", (3, 12), "win-amd64", machine="AMD64")  # GIMP 3.0 and 3.2's bundled Python
MAC_ARM_GIMP = PythonTarget("cpython", (3, 12), "macosx-11.0-arm64", machine="arm64", macos=(15, 1))
MAC_INTEL_GIMP = PythonTarget("cpython", (3, 12), "macosx-10.13-x86_64", machine="x86_64", macos=(10, 15))
TRIXIE = PythonTarget("cpython", (3, 13), "linux-x86_64", machine="x86_64", glibc=(2, 41))  # GIMP 3.0, Debian 13
FORKY = PythonTarget("cpython", (3, 14), "linux-x86_64", machine="x86_64", glibc=(2, 43))  # GIMP 3.2, Debian 14


def fitting(target):
    return sorted(name for name in WHEELS if rank(name, target) is not None)


def test_windows_gimps_python_takes_the_stable_abi_wheel_for_64_bit_windows():
    assert fitting(WINDOWS_GIMP) == ["pyzmq-27.3.0-cp312-abi3-win_amd64.whl"]
    for other in ("cp312-abi3-win32", "cp312-abi3-win_arm64", "cp311-cp311-win_amd64", "cp314-cp314t-win_amd64"):
        assert rank(f"pyzmq-27.3.0-{other}.whl", WINDOWS_GIMP) is None, other


def test_apple_silicon_takes_the_universal2_wheel_though_it_names_macos_10_15():
    assert fitting(MAC_ARM_GIMP) == ["pyzmq-27.3.0-cp312-abi3-macosx_10_15_universal2.whl"]
    assert rank("pyzmq-27.3.0-pp310-pypy310_pp73-macosx_11_0_arm64.whl", MAC_ARM_GIMP) is None  # PyPy's


def test_an_intel_mac_takes_universal2_from_macos_10_15_and_nothing_on_an_older_macos():
    assert fitting(MAC_INTEL_GIMP) == ["pyzmq-27.3.0-cp312-abi3-macosx_10_15_universal2.whl"]
    older = PythonTarget("cpython", (3, 12), "macosx-10.13-x86_64", machine="x86_64", macos=(10, 14))
    assert fitting(older) == []


def test_a_universal2_python_build_looks_for_its_machines_own_architecture():
    universal = PythonTarget("cpython", (3, 12), "macosx-10.13-universal2", machine="arm64", macos=(14, 0))
    assert platform_tags(universal)[:2] == ["macosx_14_0_arm64", "macosx_14_0_universal2"]
    assert fitting(universal) == ["pyzmq-27.3.0-cp312-abi3-macosx_10_15_universal2.whl"]


@pytest.mark.parametrize("target", [TRIXIE, FORKY], ids=["trixie-3.13", "forky-3.14"])
def test_debians_python_takes_the_manylinux_stable_abi_wheel(target):
    """No cp313 or cp314 (non-free-threaded) manylinux wheel exists: the cp312 stable-ABI one serves both."""
    assert fitting(target) == ["pyzmq-27.3.0-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"]


def test_a_free_threaded_python_takes_only_its_own_build():
    threaded = PythonTarget("cpython", (3, 14), "linux-x86_64", machine="x86_64", glibc=(2, 43), free_threaded=True)
    assert fitting(threaded) == ["pyzmq-27.3.0-cp314-cp314t-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"]


def test_an_old_glibc_takes_the_legacy_manylinux2014_wheel_and_refuses_newer_ones():
    centos7 = PythonTarget("cpython", (3, 9), "linux-x86_64", machine="x86_64", glibc=(2, 17))
    assert fitting(centos7) == ["pyzmq-27.3.0-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]
    musl = PythonTarget("cpython", (3, 12), "linux-x86_64", machine="x86_64", glibc=None)
    assert fitting(musl) == []  # musllinux is not offered: the installer says no wheel fits


def test_the_version_own_abi_comes_before_the_stable_abi():
    own, stable = "pyzmq-1.0-cp312-cp312-win_amd64.whl", "pyzmq-1.0-cp312-abi3-win_amd64.whl"
    assert best_wheel([stable, own], WINDOWS_GIMP) == own


def test_probe_output_becomes_a_target():
    probed = {
        "implementation": "cpython",
        "version": [3, 12, 10],
        "platform": "macosx-11.0-arm64",
        "machine": "arm64",
        "glibc": "",
        "macos": "15.1.1",
        "free_threaded": False,
    }
    assert PythonTarget.from_probe(probed) == MAC_ARM_GIMP


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not pypi_reachable(), reason="needs the package registry (pypi.org)")
@pytest.mark.parametrize("target", [WINDOWS_GIMP, MAC_ARM_GIMP], ids=["windows", "macos-arm64"])
def test_pip_download_with_our_arguments_fetches_the_wheel_we_would_choose(target, tmp_path):
    """pip itself, told our tags, picks among the registry's wheels of one release the one we choose."""
    arguments = pip_download_arguments(target)
    command = [sys.executable, "-m", "pip", "download", *arguments, "-d", str(tmp_path), "pyzmq==27.3.0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, shlex.join(command) + "\n" + done.stderr[-2000:]
    assert [path.name for path in tmp_path.glob("*.whl")] == [best_wheel(WHEELS, target)]
