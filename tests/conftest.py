"""Shared fixtures: tiny random weights written to disk once per session, and a pipeline loaded from them.

Every test runs against the real loading path (diffusers folders, a .pth with the official key names);
only the widths are small. Caches go to temporary folders, never to the user's home.
"""

import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLE = Path(__file__).resolve().parent.parent / "invsr" / "data" / "sample.png"

# Each folder's tests carry its marker: tests/gimp run a real GIMP 3.0 and 3.2, tests/worker start real worker
# processes, tests/ray start Ray; tests/unit need none of these (`pytest tests/unit` is the fast subset).
# `slow` is a module's own word (pytestmark) for what takes minutes on a 2-core machine.
FOLDER_MARKERS = {"gimp": "gimp", "worker": "worker", "ray": "ray"}


def pytest_collection_modifyitems(items):
    for item in items:
        marker = FOLDER_MARKERS.get(item.path.parent.name)
        if marker is not None:
            item.add_marker(marker)


# Set before any test module imports huggingface_hub, which reads these once, at import.
CACHES = Path(tempfile.mkdtemp(prefix="invsr-test-caches-"))
os.environ.update(
    INVSR_CACHE=str(CACHES / "invsr"),
    HF_HUB_CACHE=str(CACHES / "hf"),
    HF_HUB_OFFLINE="1",
    INVSR_RUNTIME_DIR=str(CACHES / "run"),  # workers that tests start by default land here, not in the user's
)
os.environ.pop("INVSR_WEIGHTS", None)


@pytest.fixture(scope="session", autouse=True)
def remove_caches():
    yield
    stop_default_worker()
    shutil.rmtree(CACHES, ignore_errors=True)


def stop_default_worker():
    """Stop a worker that a test started in the default place (`invsr gimp doctor` starts one)."""
    import json
    import signal

    try:
        os.kill(json.loads((CACHES / "run" / "worker.json").read_text())["pid"], signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    from invsr.tiny_weights import write_tiny_weights

    return write_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny")


@pytest.fixture(scope="module")
def weights(tiny_weights):
    """The tiny weights' folder, as `--weights` takes it (one per module, like the workers started on it)."""
    return tiny_weights.noise_predictor.parent


@pytest.fixture
def started():
    """`started(worker)`: the WorkerProcess once it is ready; every worker a test starts is stopped at its end,
    even when it fails."""
    workers = []
    yield lambda worker: workers.append(worker) or worker.wait_ready()
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def pipeline(tiny_weights):
    from invsr.pipeline import InvSRPipeline

    return InvSRPipeline.load(tiny_weights, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """The bundled 128 x 128 sample photo, uint8 RGB."""
    return np.asarray(Image.open(SAMPLE).convert("RGB")).copy()


@pytest.fixture
def small_photo(photo) -> np.ndarray:
    """A 40 x 24 crop: small enough for fast runs, not a multiple of what the networks need."""
    return photo[30:54, 40:80].copy()


@pytest.fixture(scope="session")
def gray_cmyk_profile() -> bytes:
    """A minimal ICC v2 input profile for CMYK whose every colour is a neutral gray (L* falls with the ink,
    a* = b* = 0): converted through it, pure cyan comes out gray, while a profile-blind formula gives cyan."""
    identity = bytes(range(256))
    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    clut = b"".join(bytes([round(255 * (1 - k) * (1 - (c + m + y) / 4)), 128, 128]) for c, m, y, k in corners)
    matrix = b"".join(struct.pack(">i", 65536 if i in (0, 4, 8) else 0) for i in range(9))
    tags = {
        b"desc": b"desc\0\0\0\0" + struct.pack(">I", 5) + b"gray\0" + bytes(4 + 4 + 3 + 67),
        b"wtpt": b"XYZ \0\0\0\0" + struct.pack(">iii", 63190, 65536, 54061),  # D50
        b"A2B0": b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + matrix + identity * 4 + clut + identity * 3,
    }
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags.items():
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, b"scnr", b"CMYK", b"Lab ") + bytes(12) + b"acsp"
    header += bytes(24) + struct.pack(">I", 0) + struct.pack(">iii", 63190, 65536, 54061)
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body
