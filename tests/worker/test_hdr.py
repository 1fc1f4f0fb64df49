"""Float TIFF files with values outside [0, 1], in-process and through a real worker: highlights and
negative values survive into a float TIFF (a format that holds them), are clipped with a note where the
format cannot, and NaN is refused with what to do."""

import time

import numpy as np
import pytest
from sample_images import hdr_image
from worker_helpers import WorkerProcess

from invsr.image_io import ImageFile, read_image, write_image
from invsr.request import UpscaleRequest
from invsr_server.cli.commands import main


@pytest.fixture
def hdr_tiff(tmp_path):
    path = tmp_path / "merge.tif"
    write_image(path, ImageFile(hdr_image()))
    assert read_image(path).pixels.max() == 4.0  # tifffile writes float TIFFs as they are
    return path


def upscale(*args, weights):
    return main(["upscale", *map(str, args), "--scale", "2", "--weights", str(weights), "--device", "cpu"])


def test_float_tiff_keeps_values_outside_zero_to_one(tmp_path, hdr_tiff, pipeline, tiny_weights, capsys):
    weights = tiny_weights.noise_predictor.parent
    assert upscale(hdr_tiff, "-o", tmp_path / "out.tif", weights=weights) == 0
    out = read_image(tmp_path / "out.tif").pixels
    assert out.dtype == np.float32 and out.max() > 3.9 and out.min() < -0.09
    np.testing.assert_array_equal(out, pipeline.upscale(hdr_image(), UpscaleRequest(scale=2)).image)
    assert upscale(hdr_tiff, "-o", tmp_path / "out.png", weights=weights) == 0
    err = capsys.readouterr().err
    assert "out.png holds values from 0 to 1 only, so values above 1 or below 0 are clipped; write TIFF" in err
    png = read_image(tmp_path / "out.png").pixels
    assert png.dtype == np.uint16 and png.max() == 65535 and png.min() == 0


def test_through_a_real_worker_the_result_is_the_same(tmp_path, hdr_tiff, tiny_weights, capsys):
    """The worker passes float frames to the library unchanged, and the result back the same way."""
    weights = tiny_weights.noise_predictor.parent
    worker = WorkerProcess(tmp_path / "worker", weights, "--preload").wait_ready()
    try:
        with worker.client() as client:  # the model loaded first: a busy machine's load is not the job's
            deadline = time.monotonic() + 240
            while client.hello().model.state not in ("ready", "failed") and time.monotonic() < deadline:
                time.sleep(0.5)
        assert upscale(hdr_tiff, "-o", tmp_path / "remote.tif", "--server", worker.path, weights=weights) == 0
        assert upscale(hdr_tiff, "-o", tmp_path / "local.tif", weights=weights) == 0
        remote, local = read_image(tmp_path / "remote.tif").pixels, read_image(tmp_path / "local.tif").pixels
        assert remote.max() > 3.9 and remote.min() < -0.09
        np.testing.assert_array_equal(remote, local)

        broken = hdr_image()
        broken[3, 4] = np.inf
        write_image(tmp_path / "broken.tif", ImageFile(broken))
        capsys.readouterr()
        assert upscale(tmp_path / "broken.tif", "-o", tmp_path / "x.tif", "--server", worker.path, weights=weights) == 1
        err = capsys.readouterr().err
        assert "holds 3 NaN or infinite values (the first at x 4, y 3)" in err
        assert "give those pixels finite values" in err
    finally:
        worker.stop()


def test_a_gray_float_tiff_keeps_them_too_and_png_says_it_clips(tmp_path, pipeline, capsys):
    from invsr.files import upscale_files

    gray = hdr_image()[..., 0].copy()
    gray[:, :3] = 0.5  # nothing beyond [0, 1] in the first columns: the whole image counts
    write_image(tmp_path / "gray.tif", ImageFile(gray))
    jobs = [(tmp_path / "gray.tif", tmp_path / "out.tif"), (tmp_path / "gray.tif", tmp_path / "out.png")]
    assert all("error" not in entry for entry in upscale_files(pipeline, jobs, UpscaleRequest(scale=2)))
    out = read_image(tmp_path / "out.tif").pixels
    assert out.ndim == 2 and out.max() > 3.9 and out.min() < -0.03  # -0.1 plus the model's value for 0
    assert "out.png holds values from 0 to 1 only" in capsys.readouterr().err
