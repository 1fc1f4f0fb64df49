"""Upscaling image files and folders: which input goes to which output, a progress bar over the images,
one report entry per image, and a bad file reported and skipped rather than stopping the others.

`pipeline` is anything with `upscale(array, request, progress)`: InvSRPipeline in-process, or
remote.RemotePipeline through the worker. One whose `upscale` takes `on_band` (all of ours) writes a TIFF or
a PNG band by band as the rows are finished (image_io.TiffBands, png_bands.PngBands), never holding the
whole result; JPEG and WebP are encoded from the whole result, held once in its own pixel type. What the
input file says besides its pixels (EXIF, XMP, IPTC, resolution) is written into the output, made true for
it (metadata.py), unless `strip_metadata`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import DeviceError, ImageFileError, InvSRError


@dataclasses.dataclass(frozen=True)
class FileOptions:
    """How files are found, named and written, besides the upscale itself."""

    recursive: bool = False  # folders with their subfolders, the tree kept under the output folder
    suffix: str = ""  # added to each output's name before its extension (photo.jpg -> photo_x4.jpg)
    skip_existing: bool = False  # an output that exists is done: resume an interrupted run
    strip_metadata: bool = False  # write no EXIF, XMP, IPTC, resolution or provenance
    keep_print_size: bool = False  # scale the resolution (DPI) with the pixels, rather than keep it


Jobs = list[tuple[Path, Path]]


def plan_jobs(
    inputs: list[Path], output: Path | None, is_image, options: FileOptions = FileOptions()
) -> tuple[Jobs, list[tuple[Path, str]]]:
    """(input, output) pairs, and (input, reason) for what cannot be done. One file may go to a file;
    anything else goes into the output folder under its own name (with `recursive`, under its path in
    the folder given), or with no output folder next to its input; `suffix` is added to the names."""
    found, failures = [], []  # (source, its name or path relative to the output folder, whether a folder's)
    for given in inputs:
        if given.is_dir():
            images = _images_in(given, is_image, options.recursive, output)
            found += [(path, path.relative_to(given), True) for path in images]
        elif given.exists() or is_image(given):
            found.append((given, Path(given.name), False))  # a missing file is reported when read, like a damaged one
        else:
            failures.append((given, "no such file or folder"))
    one_file = len(inputs) == 1 and not inputs[0].is_dir()
    single_file = one_file and output is not None and not output.is_dir() and is_image(output)
    if single_file:
        pairs = [(found[0][0], output)] if found else []
    else:
        base = {source: (output / relative if output is not None else source) for source, relative, _ in found}
        named = {source: path.with_name(path.stem + options.suffix + path.suffix) for source, path in base.items()}
        pairs = [(source, named[source]) for source, _, _ in found]
        produced = {target for _, target in pairs}  # a folder's file that this run writes is an output, not an input
        from_folders = {source for source, _, in_folder in found if in_folder}
        pairs = [(source, target) for source, target in pairs if not (source in from_folders and source in produced)]
    sources = [source for source, _ in pairs]
    inputs_seen = {_file_identity(source) for source in sources}  # none may be overwritten, even one not yet read
    jobs, taken = [], set()
    for source, target in pairs:
        if _file_identity(target) in inputs_seen:
            failures.append(
                (
                    source,
                    f"refusing to overwrite the input {target} with the upscale of {source}; choose another output",
                )
            )
        elif target in taken:
            failures.append((source, f"another input already writes {target}; upscale it separately"))
        else:
            taken.add(target)
            jobs.append((source, target))
    return jobs, failures


def _images_in(folder: Path, is_image, recursive: bool, output: Path | None) -> list[Path]:
    """The image files in `folder`, sorted; with `recursive` in its subfolders too, but not in `output`
    (where an earlier run's results are) and not through links to folders."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    skipped = _file_identity(output) if output is not None and output.is_dir() else None
    found = []
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if _file_identity(Path(top) / name) != skipped)
        paths = [Path(top) / name for name in sorted(files)]
        found += [path for path in paths if is_image(path) and path.is_file()]
    return found


def pending(jobs: Jobs) -> tuple[Jobs, Jobs]:
    """(to do, done): a job is done when its output exists, as only a finished output does (outputs are
    written to a temporary name and renamed). Temporary files that interrupted runs left are removed."""
    done = [(source, target) for source, target in jobs if target.is_file() and target.stat().st_size > 0]
    from invsr.wire.atomic import remove_stale_partials

    for folder in {target.parent for _, target in jobs}:
        remove_stale_partials(folder)
    return [job for job in jobs if job not in done], done


def _file_identity(path: Path):
    """The same value for two names of one file: through links, and on case-insensitive disks."""
    try:
        status = path.stat()
        return status.st_dev, status.st_ino
    except OSError:  # not there (yet): its resolved name
        return os.path.normcase(path.resolve())


def upscale_files(pipeline, jobs, request, options: FileOptions = FileOptions(), at_once: int = 1) -> list[dict]:
    """Upscale every (source, target) job, each output written as soon as it is done; the report's entries,
    in the jobs' order. `at_once` > 1: that many images side by side (a pipeline whose tiles are spread
    over several devices, invsr_server.cluster, keeps them all busy this way), the progress bar counting images."""
    from tqdm import tqdm

    with tqdm(total=len(jobs), unit="image", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        if at_once <= 1:
            return [_upscale_one(pipeline, source, target, request, bar, options) for source, target in jobs]
        return _side_by_side(pipeline, jobs, request, options, at_once, bar)


def _side_by_side(pipeline, jobs, request, options: FileOptions, at_once: int, bar) -> list[dict]:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    entries: dict[int, dict] = {}
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="invsr-image") as pool:
        running = {
            pool.submit(_upscale_one, pipeline, source, target, request, None, options, bar): k
            for k, (source, target) in enumerate(jobs)
        }
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    entries[running.pop(future)] = future.result()  # a DeviceError stops them all
        finally:
            for future in running:
                future.cancel()
    return [entries[k] for k in range(len(jobs))]


def _upscale_one(pipeline, source: Path, target: Path, request, bar, options: FileOptions, shown_on=None) -> dict:
    """One job's report entry; its failure is the entry's error, except a DeviceError (the device, or its
    compiler, can do no image: it stops the run). `bar` shows the image's tiles; `shown_on`, when several
    run at once, only the images done."""
    shown_on = shown_on or bar
    if bar is not None:
        bar.set_description(source.name)
    entry = {"input": str(source), "output": str(target)}
    try:
        entry.update(upscale_file(pipeline, source, target, request, bar, options))
        for notice in entry["tiling"]["notices"] + entry.pop("file_notes"):
            shown_on.write(f"invsr: {source.name}: {notice}", file=sys.stderr)
        shown_on.write(f"{source} -> {target} ({entry['seconds']['total']:.1f} s)")
    except DeviceError:
        raise
    except (InvSRError, OSError) as error:  # one image failed; the others go on
        entry["error"] = str(error) if isinstance(error, InvSRError) else f"{source}: {error}"
        shown_on.write(f"invsr: {entry['error']}", file=sys.stderr)
    shown_on.update(1)
    return entry


def upscale_file(pipeline, source: Path, target: Path, request, bar=None, options: FileOptions = FileOptions()) -> dict:
    """Upscale one file; the report's entry, with `file_notes`: what the output could not keep."""
    from .image_io import (
        EIGHT_BIT_ONLY,
        JPEG_SUFFIXES,
        TIFF_SUFFIXES,
        ImageFile,
        TiffBands,
        check_output,
        read_image,
        without_opaque_alpha,
        write_image,
    )
    from .metadata import Metadata, Provenance, for_output
    from .png_bands import PngBands

    if _file_identity(source) == _file_identity(target):
        raise ImageFileError(f"{source}: refusing to overwrite the input with its upscale; choose another output")
    started = time.perf_counter()
    image = read_image(source)
    pixels = without_opaque_alpha(image.pixels) if target.suffix.lower() in JPEG_SUFFIXES else image.pixels
    height, width = request.output_size(*pixels.shape[:2])
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    check_output(target, height, width, channels, pixels.shape[:2], pixels.dtype)  # before minutes of work
    read_seconds = time.perf_counter() - started

    def show(progress):
        if bar is not None and progress.stage == "compiling":
            bar.set_postfix_str("compiling the networks (first job of this tile size and batch: minutes)")
        elif bar is not None:
            bar.set_postfix_str(f"tile {min(progress.done, progress.total - 1)}/{progress.total - 1}")

    size = lambda array: (array.shape[1], array.shape[0])  # noqa: E731 (width, height)
    read = image.metadata or Metadata()
    band_writer = {".png": PngBands, **dict.fromkeys(TIFF_SUFFIXES, TiffBands)}.get(target.suffix.lower())
    if band_writer is not None and _takes_bands(pipeline):
        unfinished = Provenance("InvSR for GIMP", "")  # the job's own goes in at the end
        at_start = None
        if not options.strip_metadata:
            at_start = for_output(read, size(pixels), (width, height), unfinished, options.keep_print_size)
        writer = band_writer(target, height, width, channels, pixels.dtype, image.icc_profile, at_start)
        try:
            result = pipeline.upscale(pixels, request, progress=show, on_band=writer.add)
            metadata = None
            if not options.strip_metadata:
                provenance = Provenance.of(result.report, __version__)
                metadata = for_output(read, size(pixels), (width, height), provenance, options.keep_print_size)
            written = time.perf_counter()
            file_notes = writer.finish(metadata, _notes(result.report))
        except BaseException:
            writer.abort()
            raise
        seconds = dict(result.report["seconds"], read=round(read_seconds, 4))
        seconds["write"] = round(time.perf_counter() - written, 4)
        seconds["total"] = round(time.perf_counter() - started, 4)
        return dict(result.report, seconds=seconds, file_notes=file_notes)

    result = pipeline.upscale(pixels, request, progress=show)
    file_notes = []
    if target.suffix.lower() in EIGHT_BIT_ONLY and result.image.dtype != "uint8":
        precision = result.image.dtype
        file_notes.append(
            f"note: {target.name} holds 8 bits per channel; use PNG or TIFF to keep all {precision} precision"
        )
    metadata = None
    if not options.strip_metadata:
        provenance = Provenance.of(result.report, __version__)
        metadata = for_output(read, size(pixels), size(result.image), provenance, options.keep_print_size)
    written = time.perf_counter()
    file_notes += write_image(target, ImageFile(result.image, image.icc_profile, metadata), _notes(result.report))
    seconds = dict(result.report["seconds"], read=round(read_seconds, 4), write=round(time.perf_counter() - written, 4))
    seconds["total"] = round(time.perf_counter() - started, 4)
    return dict(result.report, seconds=seconds, file_notes=file_notes)


def _takes_bands(pipeline) -> bool:
    """Whether the pipeline's `upscale` can hand out its result by bands (`on_band`)."""
    try:
        return "on_band" in inspect.signature(pipeline.upscale).parameters
    except (TypeError, ValueError):
        return False


def _notes(report: dict) -> dict[str, str]:
    """What the output's text notes say of the run (PNG text, a JPEG comment): its warning, if any."""
    return {"invsr": report["warning"]} if "warning" in report else {}
