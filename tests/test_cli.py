"""The `invsr` command end to end on real files: formats and bit depths, reports, folders, bad files,
missing weights, and the weights sub-commands. Most tests call `main()` in this process (the model loads
from disk each time); a few run the installed console script as a separate process."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from invsr.cli import main
from invsr.image_io import ImageFile, read_image, write_image


@pytest.fixture
def files(tmp_path, small_photo):
    """A folder with an 8-bit PNG, a 16-bit TIFF, a JPEG and an RGBA WebP."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", ImageFile(small_photo))
    write_image(folder / "b.tif", ImageFile(small_photo.astype(np.uint16) * 257 + 100))
    write_image(folder / "c.jpg", ImageFile(small_photo))
    rgba = np.dstack([small_photo, np.full(small_photo.shape[:2], 200, np.uint8)])
    write_image(folder / "d.webp", ImageFile(rgba))
    return folder


def upscale(*args, weights):
    return main(["upscale", *map(str, args), "--weights", str(weights), "--device", "cpu"])


def test_one_file_to_one_file_with_report(tmp_path, files, tiny_weights):
    out, report = tmp_path / "out.png", tmp_path / "report.json"
    assert upscale(files / "a.png", "-o", out, "--report", report, "--seed", "5", "--steps", "2", weights=tiny_weights.noise_predictor.parent) == 0
    assert read_image(out).pixels.shape == (96, 160, 3)
    entry = json.loads(report.read_text())["images"][0]
    assert entry["input_size"] == [40, 24] and entry["output_size"] == [160, 96]
    assert entry["timesteps"] == [200, 100] and entry["seed"] == 5
    assert entry["device"] == "cpu" and entry["dtype"] == "fp32"
    assert {"vae_encode", "unet", "vae_decode", "read", "write", "total"} <= set(entry["seconds"])
    assert "host_peak_rss_bytes" in entry["peak_memory"]
    with Image.open(out) as image:  # the file itself says it is not a real upscale
        assert "NOT A REAL UPSCALE" in image.text["invsr"]


def test_folder_keeps_formats_and_bit_depths(tmp_path, files, tiny_weights):
    out = tmp_path / "out"
    assert upscale(files, "-o", out, weights=tiny_weights.noise_predictor.parent) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg", "d.webp"]
    sixteen = read_image(out / "b.tif").pixels
    assert sixteen.dtype == np.uint16 and sixteen.shape == (96, 160, 3)
    assert len(np.unique(sixteen)) > 256
    assert read_image(out / "d.webp").pixels.shape == (96, 160, 4)


def test_sixteen_bit_png_in_gives_sixteen_bit_png_out(tmp_path, small_photo, tiny_weights):
    source = tmp_path / "deep.png"
    write_image(source, ImageFile(small_photo.astype(np.uint16) * 257))
    assert upscale(source, "-o", tmp_path / "deep_x4.png", weights=tiny_weights.noise_predictor.parent) == 0
    assert read_image(tmp_path / "deep_x4.png").pixels.dtype == np.uint16


def test_bad_file_in_a_folder_is_skipped_and_reported(tmp_path, files, tiny_weights, capsys):
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert upscale(files, "-o", out, "--report", report, weights=tiny_weights.noise_predictor.parent) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg", "d.webp"]
    assert "broken.png" in capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["failed"] == 1
    assert [e["input"].endswith("broken.png") for e in data["images"] if "error" in e] == [True]


def test_missing_and_corrupt_inputs_fail_but_others_are_done(tmp_path, files, tiny_weights, capsys):
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(64))
    out = tmp_path / "out"
    code = upscale(tmp_path / "absent.png", tmp_path / "corrupt.jpg", files / "a.png", "-o", out, weights=tiny_weights.noise_predictor.parent)
    err = capsys.readouterr().err
    assert code == 1
    assert (out / "a.png").is_file() and not (out / "corrupt.jpg").exists()
    assert "absent.png: no such file" in err and "corrupt.jpg" in err and "2 of 3 image(s) failed" in err


def test_input_is_never_overwritten(tmp_path, files, tiny_weights, capsys):
    before = (files / "a.png").read_bytes()
    assert upscale(files / "a.png", "-o", files, weights=tiny_weights.noise_predictor.parent) == 1
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert (files / "a.png").read_bytes() == before


def test_bad_options_fail_before_loading_anything(tmp_path, files, capsys):
    assert main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--steps", "9", "--weights", str(tmp_path / "nothing")]) == 1
    assert "steps must be an integer from 1 to 5" in capsys.readouterr().err
    assert main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--timesteps", "100,200"]) == 1
    assert "strictly descending" in capsys.readouterr().err


def test_missing_weights_say_what_where_and_how_to_fix(tmp_path, files, capsys):
    assert main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--weights", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "missing sd-turbo/unet/config.json" in err and str(tmp_path / "empty") in err
    assert f"invsr weights download {tmp_path / 'empty'}" in err
    assert main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "stabilityai/sd-turbo" in err and "Hugging Face cache" in err and "invsr weights download" in err


def test_weights_check_passes_on_good_weights_and_names_a_broken_part(tmp_path, tiny_weights, capsys):
    copy = tmp_path / "w"
    shutil.copytree(tiny_weights.noise_predictor.parent, copy)
    assert main(["weights", "check", "--weights", str(copy), "--device", "cpu"]) == 0
    assert "all parts load" in capsys.readouterr().out
    (copy / "sd-turbo" / "vae" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"broken")
    predictor = copy / "noise_predictor_sd_turbo_v5.pth"
    predictor.write_bytes(predictor.read_bytes()[:1000])
    assert main(["weights", "check", "--weights", str(copy), "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "[ error ] SD-Turbo vae" in out and "[ error ] noise predictor" in out and "truncated" in out
    assert "[  ok   ] SD-Turbo unet" in out


def test_weights_tiny_writes_the_real_layout(tmp_path):
    assert main(["weights", "tiny", str(tmp_path / "t")]) == 0
    for part in ("unet/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json", "model_index.json"):
        assert (tmp_path / "t" / "sd-turbo" / part).is_file(), part
    assert (tmp_path / "t" / "noise_predictor_sd_turbo_v5.pth").is_file()
    assert json.loads((tmp_path / "t" / "noise_predictor_sd_turbo_v5.json").read_text())["block_out_channels"] == [32, 64]


def test_weights_download_offline_says_so(capsys):
    assert main(["weights", "download"]) == 1
    assert "cannot reach the Hugging Face hub" in capsys.readouterr().err


def test_weights_are_found_in_the_hugging_face_cache(tmp_path, tiny_weights, files):
    """The cache layout huggingface_hub writes (refs/main -> snapshots/<commit>/...), found with no network."""
    cache = tmp_path / "hf"
    for repo, source in (("models--stabilityai--sd-turbo", tiny_weights.sd_turbo), ("models--OAOA--InvSR", tiny_weights.noise_predictor.parent)):
        snapshot = cache / repo / "snapshots" / ("a" * 40)
        shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns("sd-turbo"))
        (cache / repo / "refs").mkdir()
        (cache / repo / "refs" / "main").write_text("a" * 40)
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_ENDPOINT="http://127.0.0.1:9")  # no hub to reach
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "invsr", "upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "x.png").pixels.shape == (96, 160, 3)


def test_console_script_and_demo_run_offline_with_tiny_weights(tmp_path):
    """The quick start's main job: no weights, no network -> tiny weights, loudly labelled."""
    env = dict(os.environ, INVSR_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    script = shutil.which("invsr", path=os.path.dirname(sys.executable)) or shutil.which("invsr")
    result = subprocess.run([script, "demo", "-o", str(tmp_path / "demo.png"), "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "NOT a real upscale" in result.stderr
    assert read_image(tmp_path / "demo.png").pixels.shape == (512, 512, 3)


def test_scale_size_and_tiling_options(tmp_path, files, tiny_weights):
    weights = tiny_weights.noise_predictor.parent
    report = tmp_path / "r.json"
    assert upscale(files / "a.png", "-o", tmp_path / "s.png", "--scale", "1.5", "--tile", "32", "--overlap", "8", "--report", report, weights=weights) == 0
    assert read_image(tmp_path / "s.png").pixels.shape == (36, 60, 3)
    tiling = json.loads(report.read_text())["images"][0]["tiling"]
    assert tiling["tile"] == 32 and tiling["overlap"] == 8 and tiling["grid"] == [1, 2]  # 24 x 40, padded 32 x 48
    assert upscale(files / "a.png", "-o", tmp_path / "w.png", "--width", "100", weights=weights) == 0
    assert read_image(tmp_path / "w.png").pixels.shape == (60, 100, 3)


def test_bad_size_and_tiling_options_are_explained(tmp_path, files, tiny_weights, capsys):
    weights = tiny_weights.noise_predictor.parent
    assert upscale(files / "a.png", "-o", tmp_path / "x.png", "--tile", "big", weights=weights) == 1
    assert "--tile must be a whole number or 'auto'" in capsys.readouterr().err
    assert upscale(files / "a.png", "-o", tmp_path / "x.png", "--scale", "20", weights=weights) == 1
    assert "scale must be a number from 1 to 16" in capsys.readouterr().err
    assert upscale(files / "a.png", "-o", tmp_path / "x.png", "--max-pixels", "0.01", weights=weights) == 1
    assert "over the limit of 0.01; choose a smaller scale" in capsys.readouterr().err
