"""The `invsr` command: upscale files and folders, manage weights, run the demo.

    invsr upscale INPUT... -o OUTPUT [--steps N|auto] [--timesteps 200,100] [--color-fix wavelet]
                 [--seed N] [--scale S | --width W --height H] [--tile auto|N] [--overlap N]
                 [--tile-batch auto|N] [--device auto] [--dtype auto] [--weights DIR] [--report FILE]
    invsr upscale ... --server [CONNECTION-FILE|ENDPOINT]    (through the worker)
    invsr upscale ... --ray local|ADDRESS [--actors N]       (over the GPUs of a Ray cluster)
    invsr serve [--bind ENDPOINT] [--preload] [--ray local|ADDRESS [--actors N]] [...] | --stop   (the worker)
    invsr keys DIR [--name NAME]                               (CurveZMQ key pairs)
    invsr gimp install [--gimp-dir DIR] [--offline-wheel FILE] | uninstall | doctor  (the GIMP 3 plug-in)
    invsr weights download [DIR] | check [--weights DIR] | tiny DIR
    invsr demo [-o sample_x4.png]

Exit status: 0 when everything worked, 1 when any image or check failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import invsr
from invsr import __version__
from invsr.wire import connection
from invsr.wire.contract import COLOR_FIXES, DEFAULT_COLOR_FIX
from invsr.wire.errors import InvSRError, UsageError

SAMPLE = Path(invsr.__file__).parent / "data" / "sample.png"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `serve --supervise` runs them again
    try:
        return args.run(args)
    except UsageError as error:
        print(f"invsr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except InvSRError as error:
        print(f"invsr: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("invsr: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invsr", description="InvSR one-step diffusion super-resolution.")
    parser.add_argument("--version", action="version", version=f"invsr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upscale = commands.add_parser("upscale", help="upscale image files or folders (x4 by default)")
    upscale.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    upscale.add_argument("-o", "--output", type=Path, help="output file (one input) or folder (or --suffix)")
    _add_file_options(upscale)
    _add_request_options(upscale)
    _add_model_options(upscale)
    upscale.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report of what was done")
    upscale.add_argument(
        "--server",
        nargs="?",
        const="",
        default=None,
        metavar="FILE|ENDPOINT",
        help="run through the worker: the local one (started if none answers), "
        "or the one a connection file or endpoint names",
    )
    _add_client_key_option(upscale, "this client's .key_secret, for a worker that requires CurveZMQ")
    _add_ray_options(upscale)
    upscale.set_defaults(run=run_upscale)

    serve = commands.add_parser("serve", help="run the worker: keep the model warm and serve jobs over ZeroMQ")
    _add_serve_options(serve)
    _add_model_options(serve)
    _add_ray_options(serve)
    serve.set_defaults(run=run_serve)

    gimp = commands.add_parser("gimp", help="install the GIMP 3 plug-in, remove it, or check the chain")
    gimp_actions = gimp.add_subparsers(dest="action", required=True, metavar="ACTION")
    gimp_install = gimp_actions.add_parser("install", help="install the plug-in into GIMP 3's user plug-in folders")
    _add_gimp_dir_option(gimp_install)
    _add_weights_and_device_options(gimp_install, whose=" for the worker the plug-in starts")
    _add_client_key_option(gimp_install, "this computer's .key_secret, for a remote worker that requires CurveZMQ")
    _add_gimp_python_option(gimp_install)
    gimp_install.add_argument(
        "--offline-wheel",
        type=Path,
        default=None,
        metavar="FILE",
        help="a pyzmq wheel for GIMP's Python, on a machine without internet",
    )
    gimp_install.set_defaults(run=run_gimp_install)
    gimp_uninstall = gimp_actions.add_parser("uninstall", help="remove the plug-in")
    _add_gimp_dir_option(gimp_uninstall)
    gimp_uninstall.set_defaults(run=run_gimp_uninstall)
    gimp_doctor = gimp_actions.add_parser(
        "doctor", help="check each link: GIMP, plug-in, GIMP's Python, worker, weights"
    )
    _add_gimp_dir_option(gimp_doctor)
    _add_gimp_python_option(gimp_doctor)
    gimp_doctor.set_defaults(run=run_gimp_doctor)

    keys = commands.add_parser("keys", help="make a CurveZMQ key pair (for a worker reachable beyond this machine)")
    keys.add_argument("folder", type=Path)
    keys.add_argument("--name", default="client", help="server or a client's name (default: %(default)s)")
    keys.set_defaults(run=run_keys)

    demo = commands.add_parser("demo", help="upscale the bundled sample photo (real weights if available, else tiny)")
    demo.add_argument("-o", "--output", type=Path, default=Path("sample_x4.png"), help="default: %(default)s")
    _add_request_options(demo)
    _add_model_options(demo)
    demo.set_defaults(run=run_demo)

    weights = commands.add_parser("weights", help="download, check or fake the model weights")
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="fetch SD-Turbo and the InvSR noise predictor (needs internet)")
    download.add_argument("folder", nargs="?", type=Path, help="a weights folder (default: the Hugging Face cache)")
    download.set_defaults(run=run_download)
    check = actions.add_parser("check", help="load every part and say what is present and what is wrong")
    _add_model_options(check)
    check.set_defaults(run=run_check)
    tiny = actions.add_parser("tiny", help="write small random weights in the real layout (tests only)")
    tiny.add_argument("folder", type=Path)
    tiny.set_defaults(run=run_tiny)
    return parser


def _add_gimp_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gimp-dir", type=Path, default=None, help="a plug-ins folder to use instead of GIMP 3's user plug-in folders"
    )


def _add_client_key_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--client-key", type=Path, default=None, metavar="FILE", help=help)


def _add_gimp_python_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gimp-python",
        default=None,
        metavar="COMMAND",
        help="the command that runs GIMP's own Python, when it is not found by itself (default: $INVSR_GIMP_PYTHON)",
    )


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("files and folders")
    add = files.add_argument
    add("--recursive", action="store_true", help="also the images in subfolders; the tree is kept under -o")
    add("--suffix", default="", metavar="TEXT", help="added to output names (photo_x4.jpg); without -o, beside inputs")
    add("--skip-existing", action="store_true", help="leave outputs that exist alone: resume an interrupted run")
    add("--strip-metadata", action="store_true", help="write no EXIF, XMP, IPTC, resolution or provenance (ICC stays)")
    add("--keep-print-size", action="store_true", help="scale the DPI with the pixels (default: the DPI is kept)")


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", default=None, help="1 to 5, or auto (measure noise and blur); default 1")
    parser.add_argument("--timesteps", default=None, help="explicit descending timesteps, e.g. 200,100")
    parser.add_argument("--color-fix", default=DEFAULT_COLOR_FIX, choices=COLOR_FIXES, help="default: %(default)s")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, input and device give the same output"
    )
    size = parser.add_argument_group("output size (default: 4x)")
    size.add_argument(
        "--scale", type=float, default=None, help="enlargement from 1 to 16; the output is round(side * scale)"
    )
    size.add_argument("--width", type=int, default=None, help="exact output width (with --height alone or both)")
    size.add_argument("--height", type=int, default=None, help="exact output height")
    tiles = parser.add_argument_group("tiling (for any image size, in bounded device memory)")
    tiles.add_argument("--tile", default="auto", help="tile side in input pixels, a multiple of 16, or auto (default)")
    tiles.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="input pixels shared by neighbouring tiles (default: 16, less for tiles under 48)",
    )
    tiles.add_argument("--tile-batch", default="auto", help="tiles per batch on the device, or auto (default)")


def _add_weights_and_device_options(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """--weights, --device and --dtype as `invsr serve` takes them; `whose`: for which process, in the help
    (`invsr gimp install` passes them on to the worker that the plug-in starts)."""
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help=f"weights folder{whose} (default: $INVSR_WEIGHTS or the Hugging Face cache)",
    )
    parser.add_argument("--device", default="auto", help=f"auto, cpu, cuda, cuda:N or mps{whose} (default: auto)")
    parser.add_argument("--dtype", default="auto", help=f"auto, fp16, bf16 or fp32{whose} (default: auto)")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _add_weights_and_device_options(parser)
    parser.add_argument(
        "--noise-predictor", type=Path, default=None, help="a noise predictor file other than the default v5"
    )
    parser.add_argument(
        "--max-pixels",
        type=float,
        default=None,
        metavar="MP",
        help="refuse jobs over this many megapixels of x4 result or output (default 512)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks: a slow first job, faster later ones "
        "(for a GPU worker, which compiles right after loading; with --preload at start)",
    )


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group("several GPUs and machines (the ray extra)")
    ray.add_argument(
        "--ray",
        default=None,
        metavar="local|ADDRESS",
        help="spread tiles and images over Ray actors: `local` starts Ray on this machine with all its GPUs; "
        "an address (head-node:6379) joins a cluster started with `ray start`",
    )
    ray.add_argument(
        "--actors",
        type=int,
        default=None,
        metavar="N",
        help="with --ray: how many actors, each with a warm model (default: one per GPU; one without GPUs)",
    )


def _check_ray_options(args) -> None:
    """--actors needs --ray, and --ray needs Ray installed: said at once, before any work."""
    if args.ray is None:
        if args.actors is not None:
            raise UsageError("--actors sets how many Ray actors compute: give --ray local or --ray ADDRESS too")
        return
    from invsr_server.cluster import require_ray

    require_ray()
    if args.actors is not None and args.actors < 1:
        raise UsageError(f"--actors must be at least 1, got {args.actors}")
    if args.compile:
        raise UsageError("--compile is not applied to Ray actors yet: leave it out with --ray")


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stop", action="store_true", help="stop the worker of the connection file (of any version) and exit"
    )
    parser.add_argument(
        "--bind",
        default=None,
        metavar="ENDPOINT",
        help="endpoint to listen on, e.g. tcp://127.0.0.1:47290 (default: a Unix socket in an owner-only folder beside "
        f"the connection file, which other users cannot reach; {connection.DEFAULT_ENDPOINT} on Windows)",
    )
    parser.add_argument(
        "--connection-file",
        type=Path,
        default=None,
        help="where to write the connection file (default: the user's runtime folder)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="the worker's log, rotated at 5 MB (default: beside the connection file)",
    )
    parser.add_argument("--preload", action="store_true", help="load the model now rather than at the first job")
    parser.add_argument(
        "--supervise",
        action="store_true",
        help="run the worker under a small parent that records how it ended (killed, crashed, stopped), so that "
        "clients can say so (the plug-in starts the worker this way)",
    )
    parser.add_argument("--queue-length", type=int, default=8, help="jobs that may wait (default: %(default)s)")
    parser.add_argument(
        "--jobs-per-client",
        type=int,
        default=None,
        help="jobs one client may have queued or running at once (default: half the places, 4 of 8 + 1)",
    )
    parser.add_argument(
        "--max-message-mb", type=float, default=1024, help="largest message accepted, in MB (default: %(default)s)"
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=5.0,
        help="seconds without heartbeats before a client's jobs are cancelled",
    )
    parser.add_argument(
        "--curve-keys",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with server.key_secret: encrypt with CurveZMQ",
    )
    parser.add_argument(
        "--allowed-keys", type=Path, default=None, metavar="DIR", help="folder of the public keys of allowed clients"
    )
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CurveZMQ")


def _request(args):
    from invsr.request import UpscaleRequest
    from invsr.schedule import parse_timesteps

    steps = None if args.steps is None else _auto_or_int(args.steps, "--steps")
    timesteps = parse_timesteps(args.timesteps) if args.timesteps else None
    return UpscaleRequest(
        steps=steps,
        timesteps=timesteps,
        color_fix=args.color_fix,
        seed=args.seed,
        scale=args.scale,
        width=args.width,
        height=args.height,
        tile=_auto_or_int(args.tile, "--tile"),
        overlap=args.overlap,
        tile_batch=_auto_or_int(args.tile_batch, "--tile-batch"),
    )


def _auto_or_int(text: str, option: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise InvSRError(f"{option} must be a whole number or 'auto', got {text!r}") from None


def _load(args, weights=None):
    from invsr.pipeline import InvSRPipeline
    from invsr.weights import locate

    weights = weights or locate(args.weights, args.noise_predictor)
    pipeline = InvSRPipeline.load(weights, device=args.device, dtype=args.dtype)
    if args.max_pixels is not None:
        pipeline.max_pixels = int(args.max_pixels * 1e6)
    if args.compile:
        pipeline.optimize(compile=True)
    if weights.is_tiny:
        _banner("using RANDOM TINY TEST WEIGHTS: the output is NOT a real upscale")
    return pipeline


def _start_on_ray(args):
    from invsr_server.cluster.pipeline import ActorOptions, RayPipeline

    options = ActorOptions(args.weights, args.noise_predictor, args.device, args.dtype)
    pipeline = RayPipeline.on_cluster(args.ray, args.actors, options)
    if args.max_pixels is not None:
        pipeline.max_pixels = int(args.max_pixels * 1e6)
    if pipeline.tiny:
        _banner("using RANDOM TINY TEST WEIGHTS: the output is NOT a real upscale")
    return pipeline


def _banner(text: str) -> None:
    line = "!" * (len(text) + 8)
    print(f"{line}\n!!! {text} !!!\n{line}", file=sys.stderr)


# --- upscale -------------------------------------------------------------------------------------------


def run_upscale(args) -> int:
    from invsr.files import FileOptions, pending, plan_jobs, upscale_files
    from invsr.image_io import is_image_path

    request = _request(args)  # bad parameters fail before the model loads
    _check_ray_options(args)
    if args.ray is not None and args.server is not None:
        raise UsageError("--ray computes here on Ray actors, --server on a worker: give one of them")
    options = FileOptions(
        recursive=args.recursive,
        suffix=args.suffix,
        skip_existing=args.skip_existing,
        strip_metadata=args.strip_metadata,
        keep_print_size=args.keep_print_size,
    )
    _check_file_options(args.output, options)
    if args.output is not None:
        _check_output_option(args.inputs, args.output)
    jobs, failures = plan_jobs(args.inputs, args.output, is_image_path, options)
    for source, message in failures:
        print(f"invsr: {source}: {message}", file=sys.stderr)
    done = []
    if options.skip_existing:
        jobs, done = pending(jobs)
        if done:
            count = f"{len(done)} of {len(jobs) + len(done)}"
            print(f"invsr: {count} outputs exist already and are left alone (--skip-existing)", file=sys.stderr)
    if not jobs:
        all_done = " (every output exists)" if done and not failures else ""
        print(f"invsr: nothing to upscale{all_done}", file=sys.stderr)
        return 1 if failures or not done else 0
    at_once = 1
    if args.server is not None:
        from .remote import connect_to_worker

        pipeline = connect_to_worker(args.server, args)
    elif args.ray is not None:
        pipeline = _start_on_ray(args)
        at_once = len(pipeline.actors())  # an image per actor at a time; a large one's tiles on all of them
    else:
        pipeline = _load(args)
    try:
        entries = upscale_files(pipeline, jobs, request, options, at_once)
    finally:
        if args.ray is not None:
            pipeline.close()
    entries += [{"input": str(s), "output": str(t), "skipped": "the output exists"} for s, t in done]
    entries += [{"input": str(source), "error": message} for source, message in failures]
    failed = sum(1 for entry in entries if "error" in entry)
    if args.report:
        report = {
            "invsr": __version__,
            "model": pipeline.describe(),
            "load": pipeline.load_report,
            "images": entries,
            "failed": failed,
        }
        args.report.write_text(json.dumps(report, indent=2))
    if failed:
        print(f"invsr: {failed} of {len(entries)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _check_file_options(output: Path | None, options) -> None:
    if output is None and not options.suffix:
        raise UsageError("give -o OUTPUT (a file or folder), or --suffix TEXT to write next to the inputs")
    if any(separator in options.suffix for separator in ("/", "\\")) or options.suffix in (".", ".."):
        raise UsageError(f"--suffix is added to file names and cannot hold a folder separator, got {options.suffix!r}")


def _check_output_option(inputs: list[Path], output: Path) -> None:
    """-o names one image file (for one input file) or a folder; refuse what is neither, before any work."""
    from invsr.image_io import SUFFIXES, is_image_path

    formats = ", ".join(SUFFIXES)
    if output.is_dir():
        return
    if output.suffix and not is_image_path(output):
        raise UsageError(
            f"cannot write {output.suffix} files; -o takes a file ending in {formats}, or a folder "
            "(to make a new folder with a dot in its name, create it first)"
        )
    one_file = len(inputs) == 1 and not inputs[0].is_dir()
    if not one_file and (output.exists() or is_image_path(output)):
        raise UsageError(f"-o {output} names a file, but several images are to be written; give a folder with -o")
    if output.exists() and not is_image_path(output):
        raise UsageError(f"-o {output} is an existing file, not a folder; give a folder or a file ending in {formats}")


# --- demo ----------------------------------------------------------------------------------------------


def run_demo(args) -> int:
    from invsr.files import upscale_files

    request = _request(args)  # bad parameters fail before weights are looked for, written or loaded
    weights = _demo_weights(args)
    pipeline = _load(args, weights)
    entry = upscale_files(pipeline, [(SAMPLE, args.output)], request)[0]
    if "error" in entry:
        return 1
    print(f"wrote {args.output} ({entry['output_size'][0]} x {entry['output_size'][1]}) from the bundled sample photo")
    if weights.is_tiny:
        _banner(
            f"{args.output} was made with random tiny weights: NOT a real upscale. "
            "For real weights: invsr weights download"
        )
    return 0


def _demo_weights(args):
    """Real weights when present or downloadable; otherwise tiny random ones, saying so loudly."""
    from invsr.errors import WeightsMissing
    from invsr.prompt import cache_dir
    from invsr.tiny_weights import write_tiny_weights
    from invsr.weights import download, hub_reachable, locate

    try:
        return locate(args.weights, args.noise_predictor)
    except WeightsMissing as missing:
        if args.weights is None and hub_reachable():
            print("invsr: real weights not found locally; downloading them (about 2.6 GB) ...", file=sys.stderr)
            return download()
        print(f"invsr: {missing}", file=sys.stderr)
    tiny = cache_dir() / "tiny-weights"
    if not (tiny / "sd-turbo" / "model_index.json").is_file():
        write_tiny_weights(tiny)
    print(f"invsr: no real weights and no internet: using random tiny weights from {tiny}", file=sys.stderr)
    return locate(tiny)


# --- the worker ----------------------------------------------------------------------------------------


def run_serve(args) -> int:
    from invsr_server.worker.worker import WorkerConfig, serve

    connection_file = args.connection_file or connection.default_path()
    log_file = args.log_file or connection_file.with_suffix(".log")
    if args.stop:
        return stop_serving(connection_file)
    if args.supervise:
        from invsr_server.worker.supervisor import supervise

        return supervise([word for word in args.argv if word != "--supervise"], log_file)
    _check_ray_options(args)
    config = WorkerConfig(
        bind=args.bind,
        connection_file=connection_file,
        log_file=log_file,
        weights=args.weights,
        noise_predictor=args.noise_predictor,
        device=args.device,
        dtype=args.dtype,
        preload=args.preload,
        queue_length=args.queue_length,
        jobs_per_client=args.jobs_per_client,
        max_message_bytes=int(args.max_message_mb * 1e6),
        client_timeout=args.client_timeout,
        curve_keys=args.curve_keys,
        allowed_keys=args.allowed_keys,
        insecure=args.insecure,
        compile=args.compile,
        ray=args.ray,
        actors=args.actors,
    )
    if args.max_pixels is not None:
        config.max_pixels = int(args.max_pixels * 1e6)
    return serve(config)


def stop_serving(connection_file: Path) -> int:
    from invsr.wire.client import stop_worker

    try:
        pid = stop_worker(connection_file)
    except InvSRError as error:
        print(f"invsr serve --stop: {error}", file=sys.stderr)
        return 1
    print(
        f"stopped the InvSR worker (process {pid})"
        if pid
        else f"no InvSR worker runs (connection file {connection_file})"
    )
    return 0


def run_gimp_install(args) -> int:
    from invsr.wire.flatpak import flatpak_connection_file
    from invsr_gimp.install import install

    options = (args.client_key, args.gimp_python, args.offline_wheel)
    for installed in install(args.gimp_dir, args.weights, args.device, args.dtype, *options):
        print(f"installed the plug-in in {installed.folder}\n  {installed.pyzmq}")
        if installed.flatpak:
            print(
                f"  GIMP's flatpak cannot start the worker: start it yourself and leave it running:\n"
                f"  invsr serve --connection-file {flatpak_connection_file()}"
            )
    print("restart GIMP; then: Filters > Enhance > Upscale (InvSR). `invsr gimp doctor` checks the whole chain.")
    return 0


def run_gimp_uninstall(args) -> int:
    from invsr_gimp.install import uninstall

    removed = uninstall(args.gimp_dir)
    for target in removed:
        print(f"removed {target}")
    if not removed:
        print("the plug-in was not installed")
    return 0


def run_gimp_doctor(args) -> int:
    from invsr_gimp.install import doctor

    return 0 if doctor(args.gimp_dir, args.gimp_python) else 1


def run_keys(args) -> int:
    from invsr.wire.keys import make_key_pair

    public, secret = make_key_pair(args.folder, args.name)
    print(f"public key {public} (give it to the other side)\nsecret key {secret} (keep it private)")
    return 0


# --- weights -------------------------------------------------------------------------------------------


def run_download(args) -> int:
    from invsr.weights import download, hub_reachable

    if not hub_reachable():
        raise InvSRError(
            "cannot reach the Hugging Face hub (offline, or HF_HUB_OFFLINE is set); connect to the internet and retry"
        )
    weights = download(args.folder)
    print(f"SD-Turbo:        {weights.sd_turbo}\nnoise predictor: {weights.noise_predictor}")
    return 0


def run_tiny(args) -> int:
    from invsr.tiny_weights import write_tiny_weights

    weights = write_tiny_weights(args.folder)
    print(
        f"wrote random tiny weights to {args.folder} "
        f"(SD-Turbo layout in {weights.sd_turbo}, noise predictor {weights.noise_predictor})"
    )
    _banner("these weights are random: anything made with them is NOT a real upscale")
    return 0


def run_check(args) -> int:
    from invsr.weights_check import check_weights

    return 0 if check_weights(args.weights, args.noise_predictor, args.device, args.dtype) else 1


if __name__ == "__main__":
    sys.exit(main())
