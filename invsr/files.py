"""Upscaling image files and folders: which input goes to which output, a progress bar over the images,
one report entry per image, and a bad file reported and skipped rather than stopping the others.

`pipeline` is anything with `upscale(array, request, progress)`: InvSRPipeline in-process, or
remote.RemotePipeline through the worker.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .errors import DeviceError, ImageFileError, InvSRError


def plan_jobs(inputs: list[Path], output: Path, is_image) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(input, output) pairs, and (input, reason) for what cannot be done. One file may go to a file;
    anything else goes into the output folder under its own name."""
    sources, failures = [], []
    for given in inputs:
        if given.is_dir():
            sources += sorted(p for p in given.iterdir() if p.is_file() and is_image(p))
        elif given.exists() or is_image(given):
            sources.append(given)  # a missing file is reported when it is read, like a damaged one
        else:
            failures.append((given, "no such file or folder"))
    single_file = len(inputs) == 1 and not inputs[0].is_dir() and not output.is_dir() and is_image(output)
    if single_file:
        pairs = [(sources[0], output)] if sources else []
    else:
        pairs = [(source, output / source.name) for source in sources]
    inputs_seen = {_file_identity(source) for source in sources}  # none may be overwritten, even one not yet read
    jobs, taken = [], set()
    for source, target in pairs:
        if _file_identity(target) in inputs_seen:
            failures.append((source, f"refusing to overwrite the input {target} with the upscale of {source}; choose another output"))
        elif target in taken:
            failures.append((source, f"another input already writes {target}; upscale it separately"))
        else:
            taken.add(target)
            jobs.append((source, target))
    return jobs, failures


def _file_identity(path: Path):
    """The same value for two names of one file: through links, and on case-insensitive disks."""
    try:
        status = path.stat()
        return status.st_dev, status.st_ino
    except OSError:  # not there (yet): its resolved name
        return os.path.normcase(path.resolve())


def upscale_files(pipeline, jobs, request) -> list[dict]:
    from tqdm import tqdm

    entries = []
    with tqdm(jobs, unit="image", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        for source, target in bar:
            bar.set_description(source.name)
            entry = {"input": str(source), "output": str(target)}
            try:
                entry.update(upscale_file(pipeline, source, target, request, bar))
                for notice in entry["tiling"]["notices"]:
                    bar.write(f"invsr: {source.name}: {notice}", file=sys.stderr)
                bar.write(f"{source} -> {target} ({entry['seconds']['total']:.1f} s)")
            except DeviceError:  # the device (or its compiler) can do no image: stop at the first
                raise
            except (InvSRError, OSError) as error:  # one image failed; the others go on
                entry["error"] = str(error) if isinstance(error, InvSRError) else f"{source}: {error}"
                bar.write(f"invsr: {entry['error']}", file=sys.stderr)
            entries.append(entry)
    return entries


def upscale_file(pipeline, source: Path, target: Path, request, bar=None) -> dict:
    from .image_io import (
        EIGHT_BIT_ONLY,
        JPEG_SUFFIXES,
        ImageFile,
        check_output,
        read_image,
        without_opaque_alpha,
        write_image,
    )

    if _file_identity(source) == _file_identity(target):
        raise ImageFileError(f"{source}: refusing to overwrite the input with its upscale; choose another output")
    started = time.perf_counter()
    image = read_image(source)
    pixels = without_opaque_alpha(image.pixels) if target.suffix.lower() in JPEG_SUFFIXES else image.pixels
    height, width = request.output_size(*pixels.shape[:2])
    check_output(target, height, width, pixels.shape[2] if pixels.ndim == 3 else 1)  # before minutes of work
    read_seconds = time.perf_counter() - started

    def show(progress):
        if bar is not None and progress.stage == "compiling":
            bar.set_postfix_str("compiling the networks (first job of this tile size and batch: minutes)")
        elif bar is not None:
            bar.set_postfix_str(f"tile {min(progress.done, progress.total - 1)}/{progress.total - 1}")

    result = pipeline.upscale(pixels, request, progress=show)
    notes = {"invsr": result.report["warning"]} if "warning" in result.report else {}
    if target.suffix.lower() in EIGHT_BIT_ONLY and result.image.dtype != "uint8":
        print(f"invsr: note: {target.name} holds 8 bits per channel; use PNG or TIFF to keep all {result.image.dtype} precision", file=sys.stderr)
    written = time.perf_counter()
    write_image(target, ImageFile(result.image, image.icc_profile), notes)
    seconds = dict(result.report["seconds"], read=round(read_seconds, 4), write=round(time.perf_counter() - written, 4))
    seconds["total"] = round(time.perf_counter() - started, 4)
    return dict(result.report, seconds=seconds)
