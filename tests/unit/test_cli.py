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
from compile_helpers import compile_with, no_compiler  # noqa: F401 (compile_with: a fixture)
from PIL import Image

from invsr.image_io import ImageFile, read_image, write_image
from invsr_server.cli.commands import main


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
    assert (
        upscale(
            files / "a.png",
            "-o",
            out,
            "--report",
            report,
            "--seed",
            "5",
            "--steps",
            "2",
            weights=tiny_weights.noise_predictor.parent,
        )
        == 0
    )
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
    code = upscale(
        tmp_path / "absent.png",
        tmp_path / "corrupt.jpg",
        files / "a.png",
        "-o",
        out,
        weights=tiny_weights.noise_predictor.parent,
    )
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
    assert (
        main(
            [
                "upscale",
                str(files / "a.png"),
                "-o",
                str(tmp_path / "x.png"),
                "--steps",
                "9",
                "--weights",
                str(tmp_path / "nothing"),
            ]
        )
        == 1
    )
    assert "steps must be an integer from 1 to 5" in capsys.readouterr().err
    assert main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--timesteps", "100,200"]) == 1
    assert "strictly descending" in capsys.readouterr().err


def test_missing_weights_say_what_where_and_how_to_fix(tmp_path, files, capsys):
    assert (
        main(["upscale", str(files / "a.png"), "-o", str(tmp_path / "x.png"), "--weights", str(tmp_path / "empty")])
        == 1
    )
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
    for part in (
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
        "model_index.json",
    ):
        assert (tmp_path / "t" / "sd-turbo" / part).is_file(), part
    assert (tmp_path / "t" / "noise_predictor_sd_turbo_v5.pth").is_file()
    assert json.loads((tmp_path / "t" / "noise_predictor_sd_turbo_v5.json").read_text())["block_out_channels"] == [
        32,
        64,
    ]


def test_weights_download_offline_says_so(capsys):
    assert main(["weights", "download"]) == 1
    assert "cannot reach the Hugging Face hub" in capsys.readouterr().err


def test_weights_are_found_in_the_hugging_face_cache(tmp_path, tiny_weights, files):
    """The cache layout huggingface_hub writes (refs/main -> snapshots/<commit>/...), found with no network."""
    cache = tmp_path / "hf"
    for repo, source in (
        ("models--stabilityai--sd-turbo", tiny_weights.sd_turbo),
        ("models--OAOA--InvSR", tiny_weights.noise_predictor.parent),
    ):
        snapshot = cache / repo / "snapshots" / ("a" * 40)
        shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns("sd-turbo"))
        (cache / repo / "refs").mkdir()
        (cache / repo / "refs" / "main").write_text("a" * 40)
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_ENDPOINT="http://127.0.0.1:9")  # no hub to reach
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invsr_server",
            "upscale",
            str(files / "a.png"),
            "-o",
            str(tmp_path / "x.png"),
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "x.png").pixels.shape == (96, 160, 3)


def test_console_script_and_demo_run_offline_with_tiny_weights(tmp_path):
    """The quick start's main job: no weights, no network -> tiny weights, loudly labelled."""
    env = dict(os.environ, INVSR_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    script = shutil.which("invsr", path=os.path.dirname(sys.executable)) or shutil.which("invsr")
    result = subprocess.run(
        [script, "demo", "-o", str(tmp_path / "demo.png"), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "NOT a real upscale" in result.stderr
    assert read_image(tmp_path / "demo.png").pixels.shape == (512, 512, 3)


def test_scale_size_and_tiling_options(tmp_path, files, tiny_weights):
    weights = tiny_weights.noise_predictor.parent
    report = tmp_path / "r.json"
    assert (
        upscale(
            files / "a.png",
            "-o",
            tmp_path / "s.png",
            "--scale",
            "1.5",
            "--tile",
            "32",
            "--overlap",
            "8",
            "--report",
            report,
            weights=weights,
        )
        == 0
    )
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


def test_no_input_is_overwritten_by_another_inputs_upscale(tmp_path, small_photo, tiny_weights, capsys):
    """x/a.png is both an input and where y/a.png's upscale would go: it is refused, the rest is done."""
    for folder, pixels in (("x", small_photo), ("y", small_photo[::-1]), ("z", small_photo[:, ::-1])):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / ("b.png" if folder == "z" else "a.png"), ImageFile(pixels.copy()))
    before = (tmp_path / "x" / "a.png").read_bytes()
    code = upscale(
        tmp_path / "y" / "a.png",
        tmp_path / "x" / "a.png",
        tmp_path / "z" / "b.png",
        "-o",
        tmp_path / "x",
        weights=tiny_weights.noise_predictor.parent,
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "x" / "a.png").read_bytes() == before
    assert (
        f"refusing to overwrite the input {tmp_path / 'x' / 'a.png'} with the upscale of {tmp_path / 'y' / 'a.png'}"
        in err
    )
    assert read_image(tmp_path / "x" / "b.png").pixels.shape == (96, 160, 3)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs a file that cannot be read (Linux)")
def test_unreadable_input_is_reported_and_the_others_are_done(tmp_path, files, tiny_weights, capsys):
    (files / "0bad.png").symlink_to("/proc/self/mem")  # listed first; every read of it fails
    out = tmp_path / "out"
    assert upscale(files, "-o", out, weights=tiny_weights.noise_predictor.parent) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg", "d.webp"]
    assert "0bad.png: cannot read the file" in capsys.readouterr().err


def test_output_that_is_not_a_folder_or_an_image_we_write_is_a_usage_error(tmp_path, files, capsys):
    weights = tmp_path / "not-needed"
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    assert upscale(files / "a.png", files / "c.jpg", "-o", existing, weights=weights) == 2
    assert "names a file, but several images are to be written; give a folder" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
    assert upscale(files / "a.png", "-o", tmp_path / "out.bmp", weights=weights) == 2
    assert (
        "cannot write .bmp files; -o takes a file ending in .png, .tif, .tiff, .jpg, .jpeg, .webp"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "out.bmp").exists()


def test_what_a_format_cannot_hold_fails_before_the_upscale(tmp_path, small_photo, pipeline, tiny_weights, capsys):
    """WebP's 16383-pixel side, and transparency into JPEG: refused with what to do, before the model runs
    (it may take minutes); an alpha channel that is fully opaque is simply dropped for JPEG."""
    from invsr.files import upscale_files
    from invsr.request import UpscaleRequest

    strip, transparent, opaque = tmp_path / "strip.png", tmp_path / "transparent.png", tmp_path / "opaque.png"
    write_image(strip, ImageFile(np.full((2, 4097, 3), 90, np.uint8)))  # x4: 16388 wide
    alpha = np.full(small_photo.shape[:2], 200, np.uint8)
    write_image(transparent, ImageFile(np.dstack([small_photo, alpha])))
    write_image(opaque, ImageFile(np.dstack([small_photo, np.full_like(alpha, 255)])))
    assert upscale(strip, "-o", tmp_path / "strip.webp", weights=tiny_weights.noise_predictor.parent) == 1
    assert (
        "WEBP holds at most 16383 pixels per side, and the output would be 16388 x 8; write PNG or TIFF, or choose "
        "a smaller scale (at most --scale 3.99 for this 4097 x 2 input)" in capsys.readouterr().err
    )
    upscaled = []

    class Watched:  # the real pipeline, with a record of what it was asked to upscale
        def upscale(self, image, request, progress=None):
            upscaled.append(image.shape)
            return pipeline.upscale(image, request, progress)

    jobs = [(strip, tmp_path / "strip.webp"), (transparent, tmp_path / "t.jpg"), (opaque, tmp_path / "o.jpg")]
    entries = upscale_files(Watched(), jobs, UpscaleRequest())
    assert "WEBP holds at most 16383 pixels per side" in entries[0]["error"]
    assert "JPEG has no alpha channel" in entries[1]["error"] and "write PNG, TIFF or WebP" in entries[1]["error"]
    assert "error" not in entries[2]
    assert upscaled == [small_photo.shape]  # only the opaque one, without its alpha
    assert read_image(tmp_path / "o.jpg").pixels.shape == (96, 160, 3)


@pytest.mark.parametrize("name", ["gray_trns.png", "gray_alpha.tif"])
def test_transparency_of_gray_images_survives_the_upscale(tmp_path, tiny_weights, name):
    gray = np.full((12, 16), 180, np.uint8)
    gray[:, :8] = 0
    if name.endswith(".png"):
        Image.fromarray(gray).save(tmp_path / name, transparency=0)  # a tRNS chunk: gray 0 is transparent
    else:
        Image.fromarray(np.dstack([gray, np.where(gray == 0, 0, 255).astype(np.uint8)]), "LA").save(tmp_path / name)
    assert upscale(tmp_path / name, "-o", tmp_path / "out.png", weights=tiny_weights.noise_predictor.parent) == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "LA"
        alpha = np.asarray(out)[..., 1]
    assert (alpha[:, :28] == 0).all() and (alpha[:, 36:] == 255).all()


def test_cmyk_files_give_rgb_without_their_cmyk_profile(tmp_path, tiny_weights, gray_cmyk_profile):
    cmyk = (np.random.default_rng(0).random((12, 16, 4)) * 255).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", icc_profile=gray_cmyk_profile)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    weights = tiny_weights.noise_predictor.parent
    assert upscale(tmp_path / "c.jpg", "-o", tmp_path / "c_x4.png", weights=weights) == 0
    assert upscale(tmp_path / "c.tif", "-o", tmp_path / "c_x4.jpg", weights=weights) == 0  # no alpha to refuse
    for name in ("c_x4.png", "c_x4.jpg"):
        with Image.open(tmp_path / name) as out:
            assert out.mode == "RGB" and "icc_profile" not in out.info


def test_png_orientation_is_applied(tmp_path, small_photo, tiny_weights):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned a quarter clockwise
    Image.fromarray(small_photo).save(tmp_path / "turned.png", exif=exif)
    assert (
        upscale(tmp_path / "turned.png", "-o", tmp_path / "out.png", weights=tiny_weights.noise_predictor.parent) == 0
    )
    assert read_image(tmp_path / "out.png").pixels.shape == (160, 96, 3)  # upright, as viewers show the input


def test_demo_checks_its_options_before_looking_for_weights(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d.png"), "--steps", "9", "--weights", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "steps must be an integer from 1 to 5" in err
    assert "sd-turbo" not in err and "tiny weights" not in err


def test_a_failing_compiler_stops_a_folder_at_its_first_image_with_what_to_do(
    tmp_path, files, tiny_weights, compile_with, capsys
):
    compile_with(no_compiler)
    assert upscale(files, "-o", tmp_path / "out", "--compile", weights=tiny_weights.noise_predictor.parent) == 1
    error = capsys.readouterr().err
    assert error.count("compiling the networks failed") == 1 and "run without --compile" in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
