"""The tile engine gives byte for byte the results recorded before it was cut into parts (tile_engine_cases.py):
every case's image, tiling report, progress sequence and timed stages.

Float results depend on the torch build and CPU kernels (and the thread count, which the cases fix): on
another platform than the recorded one the images are compared within a rounding's tolerance instead,
where they are stored whole, and the reports and progress still exactly."""

import numpy as np
import pytest
import tile_engine_cases as cases

pytestmark = pytest.mark.slow  # minutes on a 2-core machine

RECORDED_IMAGES, RECORDED_FACTS, RECORDED_PLATFORM = cases.load_recorded()
SAME_PLATFORM = cases.platform() == RECORDED_PLATFORM


@pytest.fixture(scope="module")
def inputs():
    return cases.images()


def check(name: str, image: np.ndarray, facts: dict) -> None:
    want = RECORDED_FACTS[name]
    assert {k: v for k, v in facts.items() if k != "sha256"} == {k: v for k, v in want.items() if k != "sha256"}
    if SAME_PLATFORM:
        if facts["sha256"] != want["sha256"] and name in RECORDED_IMAGES:
            difference = np.abs(image.astype(np.float64) - RECORDED_IMAGES[name].astype(np.float64))
            changed = np.count_nonzero(difference)
            pytest.fail(f"{name}: not byte-identical; {changed} values differ, by up to {difference.max():g}")
        assert facts["sha256"] == want["sha256"], f"{name}: not byte-identical"
    elif name in RECORDED_IMAGES:
        scale = 1.0 if image.dtype == np.float32 else float(np.iinfo(image.dtype).max)
        np.testing.assert_allclose(image / scale, RECORDED_IMAGES[name] / scale, atol=2 / 255, rtol=0)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_upscale_is_byte_identical_to_the_recorded_result(pipeline, inputs, name):
    with cases.recording_threads():
        image, facts = cases.run_case(pipeline, cases.CASES[name], inputs)
    check(name, image, facts)


@pytest.mark.parametrize("name", list(cases.BENCH_CASES))
def test_benchmark_options_are_byte_identical_to_the_recorded_result(pipeline, inputs, name):
    with cases.recording_threads():
        image, facts = cases.run_bench_case(pipeline, cases.BENCH_CASES[name], inputs)
    check(name, image, facts)


def test_the_recorded_matrix_covers_every_path():
    """A guard against a re-recording that silently drops a path."""
    facts = RECORDED_FACTS
    tiling = [f["tiling"] for f in facts.values()]
    assert {t["tiles"] for t in tiling} >= {1, 2, 6, 12} and {t["tile"] for t in tiling} >= {32, 48, 64}
    assert {t["batch"] for t in tiling} >= {1, 2, 3} and any(t["static_shapes"] for t in tiling)
    assert any("at batch 1" in n for t in tiling for n in t["notices"])
    assert any("tiles per batch" in n for t in tiling for n in t["notices"])
    assert any(p[0] == "compiling" for f in facts.values() for p in f.get("progress", []))
    assert {f.get("dtype") for f in facts.values()} >= {"uint8", "uint16", "float32"}
