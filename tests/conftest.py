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
os.environ.update(INVSR_CACHE=str(CACHES / "invsr"), HF_HUB_CACHE=str(CACHES / "hf"), HF_HUB_OFFLINE="1")
os.environ.pop("INVSR_WEIGHTS", None)


@pytest.fixture(scope="session", autouse=True)
def remove_caches():
    yield
    shutil.rmtree(CACHES, ignore_errors=True)


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
