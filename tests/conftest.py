"""Shared fixtures: tiny random weights written to disk once per session, and a pipeline loaded from them.

Every test runs against the real loading path (diffusers folders, a .pth with the official key names);
only the widths are small. Caches go to temporary folders, never to the user's home.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLE = Path(__file__).resolve().parent.parent / "invsr" / "data" / "sample.png"


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
