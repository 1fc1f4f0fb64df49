"""`InvSRPipeline`: load the model once, then upscale arrays with it.

    pipeline = InvSRPipeline.load(locate(), device="auto", dtype="auto")
    result = pipeline.upscale(pixels, UpscaleRequest(steps=1, seed=0))
    result.image, result.report

`upscale` owns what surrounds the sampler on this device: the image's checks before its tiles and the
result after them (image_job.py: the array contract and alpha, the output size and its limit, the step
choice, the report), the tile settings for this device, and the tiled run (tiles/, which resamples each
tile to the requested size as it goes), timings and peak memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from invsr.wire.contract import DEFAULT_MAX_PIXELS

from . import __version__, compile_cache
from .checkpoint import load_strict, read_state_dict
from .devices import DTYPE_NAMES, peak_memory, reset_peak_memory, resolve_device, resolve_dtype
from .devices import describe as describe_device
from .errors import CheckpointError, DeviceError
from .image_job import BandHandler, ImageJob, UpscaleResult
from .noise_predictor import NoisePredictor, NoisePredictorConfig
from .progress import ProgressCallback, StageTimer
from .prompt import prompt_embedding
from .request import UpscaleRequest
from .sampling import Models
from .tiles import DEFAULT_TILE, TileDriver, choose_settings
from .weights import WeightPaths, locate, variant_of, weight_file


class InvSRPipeline:
    def __init__(
        self, models: Models, weights: WeightPaths, device: torch.device, dtype: torch.dtype, load_report: dict
    ):
        self.models, self.weights, self.device, self.dtype = models, weights, device, dtype
        self.load_report = load_report
        self.max_pixels = DEFAULT_MAX_PIXELS  # the x4 intermediate or the output, whichever is larger
        self.compiled_shapes: set | None = None  # when compiled: the (tile, batch) shapes compiled so far

    @classmethod
    def load(cls, weights: WeightPaths | None = None, device: str = "auto", dtype: str = "auto") -> InvSRPipeline:
        """Load every part onto `device` in `dtype` ('auto' picks, see devices.py)."""
        weights = weights or locate()
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        started = time.perf_counter()
        quiet_library_logs()
        embedding, cached = prompt_embedding(weights.sd_turbo)
        models = Models(
            noise_predictor=load_noise_predictor(weights),
            unet=load_sd_turbo_part("UNet2DConditionModel", weights, "unet", torch_dtype),
            vae=load_sd_turbo_part("AutoencoderKL", weights, "vae", torch_dtype),
            prompt_embedding=embedding,
        )
        check_compatible(models, weights)
        models.noise_predictor.to(torch_device, torch_dtype)
        models.unet.to(torch_device)
        models.vae.to(torch_device)
        models.prompt_embedding = embedding.to(torch_device, torch_dtype)
        load_report = {"seconds": round(time.perf_counter() - started, 3), "prompt_embedding_cached": cached}
        return cls(models, weights, torch_device, torch_dtype, load_report)

    def optimize(self, compile: bool = True, channels_last: bool = True) -> None:
        """Trade a slow first job for faster later ones (worth it in a long-lived worker on a GPU):
        channels-last memory layout for the convolutions and, with `compile`, torch.compile of the
        networks (what it gains and what the first job costs: bench/README.md). Compiled, every image is cut into
        full-size tiles in full batches (tiles/driver.py), so the networks see one shape and compile once, not
        once per image size; results then differ slightly from the eager ones (tiles placed
        differently), as any change of tiling does."""
        models = self.models
        if not hasattr(self, "_as_loaded"):  # the networks themselves, for undo_optimize
            self._as_loaded = (models.unet, models.vae.encoder, models.vae.decoder, models.noise_predictor)
        for network in (models.unet, models.vae, models.noise_predictor) if channels_last else ():
            network.to(memory_format=torch.channels_last)
        if compile:  # one input shape per network (static_shapes), so dynamic shapes buy nothing
            models.unet = torch.compile(models.unet, dynamic=False)
            models.vae.encoder = torch.compile(models.vae.encoder, dynamic=False)
            models.vae.decoder = torch.compile(models.vae.decoder, dynamic=False)
            models.noise_predictor = torch.compile(models.noise_predictor, dynamic=False)
        self.compiled_shapes = set() if compile else None
        self.load_report["optimized"] = {"channels_last": channels_last, "compile": compile}

    def undo_optimize(self) -> None:
        """Return to the networks as loaded, as if `optimize` had never run: the same modules (no second copy
        of the weights), uncompiled, in the default memory layout, so results are the eager ones again. What
        a worker does when compiling fails: it serves on, uncompiled."""
        if not hasattr(self, "_as_loaded"):
            return
        models = self.models
        models.unet, models.vae.encoder, models.vae.decoder, models.noise_predictor = self._as_loaded
        for network in (models.unet, models.vae, models.noise_predictor):
            network.to(memory_format=torch.contiguous_format)
        del self._as_loaded
        self.compiled_shapes = None
        self.load_report.pop("optimized", None)

    @property
    def static_shapes(self) -> bool:
        """One network input shape for every image: what compiled networks need (tiles/driver.py)."""
        return self.compiled_shapes is not None

    def describe(self) -> dict:
        """The model's identity for reports and `hello`: device, dtype, weights, whether they are real."""
        return {
            "version": __version__,
            "device": describe_device(self.device),
            "dtype": DTYPE_NAMES[self.dtype],
            "weights": {
                "source": self.weights.source,
                "sd_turbo": str(self.weights.sd_turbo),
                "noise_predictor": str(self.weights.noise_predictor),
                "tiny_random": self.weights.is_tiny,
            },
        }

    def warm_up(self) -> None:
        """Upscale one tile of the default size and batch: compiled networks compile on this first call, so
        that a worker can do it before its first job rather than during it. Compiled, what an earlier start on
        this machine compiled for the same key is loaded first, and what this one compiles is kept
        (compile_cache.py); `load_report["compile_cache"]` says which."""
        if not self.static_shapes:
            self.upscale(np.zeros((DEFAULT_TILE, DEFAULT_TILE, 3), np.uint8))
            return
        key = self.compile_key()
        loaded = compile_cache.load(key)
        self.upscale(np.zeros((DEFAULT_TILE, DEFAULT_TILE, 3), np.uint8))
        kept = None if loaded else compile_cache.save(key)
        self.load_report["compile_cache"] = {"loaded": loaded, "file": str(kept or compile_cache.bundle_path(key))}

    def compile_key(self) -> dict:
        """What decides the compiled networks' code for the default tile and automatic batch (compile_cache.py)."""
        settings = choose_settings(UpscaleRequest(), self.device, self.dtype, self.models.lr_multiple)
        networks = (self.models.noise_predictor, self.models.unet, self.models.vae)
        channels_last = self.load_report.get("optimized", {}).get("channels_last", False)
        return compile_cache.compile_key(
            networks, self.device, self.dtype, settings.tile, settings.batch, channels_last
        )

    def upscale(
        self,
        image: np.ndarray,
        request: UpscaleRequest = UpscaleRequest(),
        progress: ProgressCallback | None = None,
        cancel_check: Callable[[], None] | None = None,
        on_band: BandHandler | None = None,
    ) -> UpscaleResult:
        """Upscale an (H, W[, C]) array (see pixels.py for what is accepted) to the request's size.
        `progress` hears after each batch; `cancel_check` is called before each stage (progress.py).
        With `on_band`, the result comes in bands of rows as they are finished, top to bottom, as
        `on_band(first_row, rows)` (rows: (n, W[, C]) in the result's dtype), and the result's image is
        None: nothing holds the whole output (image_job.py)."""
        job = ImageJob.start(image, request, self.max_pixels)
        settings = choose_settings(request, self.device, self.dtype, self.models.lr_multiple)
        timer = StageTimer(self.device, cancel_check)
        reset_peak_memory(self.device)
        driver = TileDriver(self.models, self.device, timer, progress, self.compiled_shapes)
        assembly = job.assembly(timer, on_band)
        try:  # resampled to out_size tile by tile, finished band by band: no x4 image, no float output
            tiled = driver.run(
                job.lr, job.recipe, request.seed, settings, job.out_size, on_band=assembly, finish=assembly
            )
        except torch._dynamo.exc.TorchDynamoException as error:  # only compiled networks raise these
            raise _compile_failure(error) from error
        peak = peak_memory(self.device)
        return job.finish(assembly, tiled.report(), timer, progress, self.describe(), peak, self.weights.is_tiny)


def load_noise_predictor(weights: WeightPaths) -> NoisePredictor:
    config_path = weights.noise_predictor_config
    config = NoisePredictorConfig.from_json_file(config_path) if config_path.is_file() else NoisePredictorConfig()
    model = NoisePredictor(config)
    load_strict(model, read_state_dict(weights.noise_predictor), weights.noise_predictor)
    return model.eval()


def load_sd_turbo_part(class_name: str, weights: WeightPaths, part: str, dtype: torch.dtype) -> torch.nn.Module:
    import diffusers

    folder = weights.sd_turbo / part
    found = weight_file(folder, "diffusion_pytorch_model")
    try:
        model = getattr(diffusers, class_name).from_pretrained(
            str(folder), variant=variant_of(found) if found else None, torch_dtype=dtype
        )
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{folder}: cannot load the SD-Turbo {part} ({error}); run `invsr weights check` for details"
        ) from error
    return model.eval().requires_grad_(False)


def check_compatible(models: Models, weights: WeightPaths) -> None:
    """Refuse parts that load but cannot work together (say, a folder of another Stable Diffusion)."""
    unet, vae = models.unet.config, models.vae.config
    width = models.prompt_embedding.shape[-1]
    latent = models.noise_predictor.config.latent_channels
    if unet.cross_attention_dim != width:
        raise CheckpointError(
            f"{weights.sd_turbo}: the UNet expects text features of width {unet.cross_attention_dim}, "
            f"the text encoder gives {width}"
        )
    if not unet.in_channels == vae.latent_channels == latent:
        raise CheckpointError(
            f"{weights.sd_turbo}: latent channels disagree "
            f"(UNet {unet.in_channels}, VAE {vae.latent_channels}, noise predictor {latent})"
        )


def quiet_library_logs() -> None:
    """diffusers and transformers print loading bars and notes that mean nothing to our users."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _compile_failure(error: Exception) -> DeviceError:
    """What to tell the user when torch.compile fails (no C++ compiler for a CPU, no Triton for a GPU):
    the compiler's own error, which TorchDynamo wraps, in a line, and what to do."""
    cause = getattr(error, "inner_exception", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0][:300]
    return DeviceError(f"compiling the networks failed ({type(cause).__name__}: {first_line}); run without --compile")
