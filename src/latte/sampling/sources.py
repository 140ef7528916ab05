"""Where a pipeline's parts come from: our run directories, the released official checkpoints, diffusers folders.

Each loader returns a :class:`Parts` bundle (model, encoder configs, noise schedule, defaults, provenance); the
pipeline builds the encoders from it. Nothing here unpickles objects: ``.pt`` files are read weights-only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from latte.config import ConfigError
from latte.diffusion import PREDICTION_TYPES
from latte.encoders import AutoencoderConfig, TextEncoderConfig
from latte.models import Latte
from latte.models.lora import ADAPTER_FILE, apply_lora_file

PathLike = Union[str, Path]

__all__ = ["Defaults", "Parts", "OFFICIAL_KINDS", "DEFAULTS", "load_run", "load_official", "load_diffusers",
           "detect_source", "read_class_names", "vae_config_for", "betas_from_scheduler_config"]


@dataclass(frozen=True)
class Defaults:
    """Official sampling settings per kind of model."""

    sampler: str
    steps: int
    cfg_scale: float


DEFAULTS = {
    "none": Defaults("ddpm", 250, 1.0),  # ffs/sky/taichi sample configs
    "class": Defaults("ddpm", 250, 7.0),  # ucf101_sample.yaml
    "text": Defaults("ddim-diffusers", 50, 7.5),  # t2v_sample.yaml / Latte-1 scheduler
}

# released checkpoints: kind -> official Latte(...) constructor kwargs (Latte-XL/2, 256 px, 16 frames)
OFFICIAL_KINDS = {
    "ffs": dict(extras=1),
    "sky": dict(extras=1),
    "taichi": dict(extras=1),
    "ucf101": dict(extras=2, num_classes=101),
    "t2v": None,  # LatteT2V: config.json next to the weights, else the released t2v defaults
}
_KIND_HINTS = {"ffs": "ffs", "faceforensics": "ffs", "sky": "sky", "taichi": "taichi", "ucf": "ucf101",
               "t2v": "t2v", "latte-1": "t2v", "latte1": "t2v"}


@dataclass
class Parts:
    model: Latte
    autoencoder: Optional[AutoencoderConfig]
    text_encoder: Optional[TextEncoderConfig]
    betas: np.ndarray
    defaults: Defaults
    source: dict
    class_names: Optional[list[str]] = None
    prediction_type: str = "epsilon"  # what the model's first C output channels are (epsilon or v_prediction)
    truncate_text: bool = False
    extras: dict = field(default_factory=dict)


def linear_betas(steps: int = 1000) -> np.ndarray:
    from latte.diffusion.gaussian import beta_schedule

    return beta_schedule("linear", steps)


# --------------------------------------------------------------------------------------------------------------
# Our runs
# --------------------------------------------------------------------------------------------------------------


def _checkpoint_dir(path: Path) -> Path:
    """A checkpoint directory (``ema/`` or ``model/`` + ``run_config.yaml``) from a run or checkpoint path."""
    if (path / "run_config.yaml").is_file() and any((path / w / "config.json").is_file() for w in ("ema", "model")):
        return path
    from latte.training.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: not a run directory (checkpoints/latest), a checkpoint directory (ema/, model/, "
            "run_config.yaml), a Latte model folder (config.json + model.safetensors), a diffusers/Latte-1 folder "
            "(transformer/) or an official .pt file") from None


def read_class_names(ckpt_dir: Path, run_config) -> Optional[list[str]]:
    """The class-name mapping saved with a run: ``class_names.json`` in the checkpoint or run directory (a list,
    index = class id, or a ``{name: id}`` object), else ``data.class_names`` of the run config."""
    for folder in (ckpt_dir, ckpt_dir.parent.parent, ckpt_dir.parent):
        f = folder / "class_names.json"
        if f.is_file():
            data = json.loads(f.read_text())
            if isinstance(data, dict):
                names = [None] * len(data)
                for name, idx in data.items():
                    names[int(idx)] = name
                return names
            return [str(x) for x in data]
    names = getattr(getattr(run_config, "data", None), "class_names", None)
    return list(names) if names else None


def load_run(path: PathLike, ema: bool = True) -> Parts:
    """Parts of a training run: its latest checkpoint (or the given one), EMA weights by default."""
    import yaml

    from latte.diffusion.gaussian import beta_schedule
    from latte.training.config import run_config_from_dict

    path = Path(path)
    ckpt = _checkpoint_dir(path)
    which = "ema" if ema else "model"
    if not (ckpt / which / "config.json").is_file():
        raise FileNotFoundError(f"{ckpt}: no {which}/ weights folder (written by the trainer)")
    run = run_config_from_dict(yaml.safe_load((ckpt / "run_config.yaml").read_text()))
    model = Latte.from_pretrained(ckpt / which)
    source = {"checkpoint": str(ckpt), "weights": which}
    if (ckpt / which / ADAPTER_FILE).is_file():  # a train.trainable: lora run: base weights + its adapter
        apply_lora_file(model, ckpt / which)
        source["lora"] = str(ckpt / which)
    cond = model.config.conditioning
    betas = beta_schedule(run.diffusion.noise_schedule, run.diffusion.diffusion_steps)
    return Parts(model=model, autoencoder=run.autoencoder, text_encoder=run.text_encoder if cond == "text" else None,
                 betas=betas, defaults=DEFAULTS[cond], class_names=read_class_names(ckpt, run),
                 prediction_type=run.diffusion.prediction_type, truncate_text=False,
                 source=source)


def load_model_folder(path: PathLike) -> Parts:
    """A bare ``Latte.save_pretrained`` folder: encoders must be given separately (``vae=``, ``text_encoder=``)."""
    model = Latte.from_pretrained(path)
    cond = model.config.conditioning
    return Parts(model=model, autoencoder=None, text_encoder=None, betas=linear_betas(),
                 defaults=DEFAULTS[cond], source={"checkpoint": str(path), "weights": "model"})


# --------------------------------------------------------------------------------------------------------------
# Encoders of released / diffusers folders
# --------------------------------------------------------------------------------------------------------------


def vae_config_for(path: PathLike, chunk_size: Optional[int] = None) -> AutoencoderConfig:
    """An autoencoder config for a VAE path: a diffusers VAE folder, a folder holding ``vae/`` (or
    ``sd-vae-ft-ema``/``sd-vae-ft-mse``), or a single weights file. The kind (``AutoencoderKL`` or
    ``AutoencoderKLTemporalDecoder``) is read from the folder's ``config.json``."""
    path = Path(path).expanduser()
    folder, sub = path, None
    if path.is_dir() and not (path / "config.json").is_file():
        for name in ("vae", "sd-vae-ft-ema", "sd-vae-ft-mse", "vae_temporal_decoder"):
            if (path / name / "config.json").is_file():
                folder, sub = path / name, name
                break
        else:
            raise FileNotFoundError(f"{path}: no VAE found (expected config.json, or a vae/ subfolder holding "
                                    "config.json + diffusion_pytorch_model.safetensors)")
    kind = "sd_vae"
    if folder.is_dir():
        cls = json.loads((folder / "config.json").read_text()).get("_class_name", "AutoencoderKL")
        kind = "temporal_decoder" if cls == "AutoencoderKLTemporalDecoder" else "sd_vae"
    return AutoencoderConfig(kind=kind, path=str(path), subfolder=sub, chunk_size=chunk_size, sample_posterior=False)


def text_encoder_config_for(path: PathLike, max_length: Optional[int] = None) -> TextEncoderConfig:
    """A text-encoder config for a local model folder (or a pipeline folder with text_encoder/ + tokenizer/);
    the kind (t5, clip, or a BERT-like MiniLM) is read from its ``config.json``."""
    path = Path(path).expanduser()
    cfg_file = path / "text_encoder" / "config.json"
    if not cfg_file.is_file():
        cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: no text encoder found (expected config.json, or text_encoder/ and "
                                "tokenizer/ subfolders)")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    kind = {"t5": "t5", "umt5": "t5", "clip_text_model": "clip", "clip": "clip"}.get(model_type, "minilm")
    return TextEncoderConfig(kind=kind, path=str(path), max_length=max_length)


_SCHEDULER_SAMPLERS = {
    "DDIMScheduler": "ddim-diffusers", "DPMSolverMultistepScheduler": "dpm-solver",
    "DPMSolverSinglestepScheduler": "dpm-solver-single", "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler-a", "PNDMScheduler": "pndm", "HeunDiscreteScheduler": "heun",
    "DEISMultistepScheduler": "deis", "UniPCMultistepScheduler": "unipc", "DDPMScheduler": "ddpm-diffusers",
    "KDPM2AncestralDiscreteScheduler": "kdpm2-a",
}


def betas_from_scheduler_config(config: dict) -> np.ndarray:
    """Training betas described by a diffusers ``scheduler_config.json`` (linear / scaled_linear / cosine)."""
    from latte.diffusion.gaussian import beta_schedule

    steps = int(config.get("num_train_timesteps", 1000))
    if config.get("trained_betas"):
        return np.asarray(config["trained_betas"], dtype=np.float64)
    schedule = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    if schedule == "linear":
        return np.linspace(start, end, steps, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(start ** 0.5, end ** 0.5, steps, dtype=np.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        return beta_schedule("squaredcos_cap_v2", steps)
    raise ConfigError(f"scheduler beta_schedule '{schedule}' is not supported (linear, scaled_linear, "
                      "squaredcos_cap_v2)")


# --------------------------------------------------------------------------------------------------------------
# Released official checkpoints and diffusers folders
# --------------------------------------------------------------------------------------------------------------


def guess_kind(path: PathLike) -> Optional[str]:
    name = Path(path).name.lower()
    for hint, kind in _KIND_HINTS.items():
        if hint in name:
            return kind
    return None


def _t2v_parts(transformer: PathLike, config: Optional[dict], source: dict) -> Parts:
    from latte.interop.official import T2V_DEFAULTS, load_latte_t2v

    path = Path(transformer)
    if config is None and not (path.is_dir() and (path / "config.json").is_file()):
        config = dict(T2V_DEFAULTS)  # t2v.pt: the released Latte-0/Latte-1 transformer
    wrapped = load_latte_t2v(str(path), config)
    return Parts(model=wrapped.model, autoencoder=None, text_encoder=None, betas=linear_betas(),
                 defaults=DEFAULTS["text"], truncate_text=True, source=source, extras=wrapped.extras)


def load_official(checkpoint: PathLike, vae: Optional[PathLike] = None, kind: Optional[str] = None,
                  config: Optional[dict] = None, text_encoder: Optional[PathLike] = None) -> Parts:
    """A released checkpoint: ``ffs.pt`` / ``skytimelapse.pt`` / ``taichi-hd.pt`` / ``ucf101.pt`` (+ a VAE
    folder), ``t2v.pt`` (+ VAE and T5 folders) or a Latte-1 folder (transformer/, vae/, text_encoder/,
    tokenizer/, scheduler/). ``kind`` (ffs, sky, taichi, ucf101, t2v) is guessed from the file name when
    omitted; ``config`` overrides the official constructor arguments."""
    from latte.interop.official import load_latte

    path = Path(checkpoint).expanduser()
    if path.is_dir() and (path / "transformer").is_dir():
        return load_diffusers(path, vae=vae, text_encoder=text_encoder)
    kind = kind or guess_kind(path)
    if kind is None and path.is_dir():
        kind = "t2v"  # a LatteT2V / LatteTransformer3DModel folder (config.json + weights)
    if kind not in OFFICIAL_KINDS:
        raise ConfigError(f"{path}: cannot tell which released model this is; pass kind= one of "
                          f"{', '.join(OFFICIAL_KINDS)} (--kind on the command line)")
    source = {"checkpoint": str(path), "official_kind": kind}
    if kind == "t2v":
        parts = _t2v_parts(path, config, source)
    else:
        wrapped = load_latte(str(path), {**OFFICIAL_KINDS[kind], **(config or {})})
        cond = wrapped.model.config.conditioning
        parts = Parts(model=wrapped.model, autoencoder=None, text_encoder=None, betas=linear_betas(),
                      defaults=DEFAULTS[cond], source=source)
    if vae is not None:
        parts.autoencoder = vae_config_for(vae)
    if text_encoder is not None and parts.model.config.conditioning == "text":
        parts.text_encoder = text_encoder_config_for(text_encoder, max_length=120)
    return parts


def load_diffusers(folder: PathLike, vae: Optional[PathLike] = None,
                   text_encoder: Optional[PathLike] = None) -> Parts:
    """A diffusers ``LattePipeline`` folder (also the Latte-1 layout): transformer/, vae/, text_encoder/,
    tokenizer/, scheduler/. The scheduler config sets the default sampler and the noise schedule."""
    folder = Path(folder).expanduser()
    if not (folder / "transformer").is_dir():
        raise FileNotFoundError(f"{folder}: expected a transformer/ subfolder (diffusers LattePipeline layout)")
    parts = _t2v_parts(folder / "transformer", None, {"checkpoint": str(folder), "format": "diffusers"})
    sched_file = folder / "scheduler" / "scheduler_config.json"
    if sched_file.is_file():
        sched = json.loads(sched_file.read_text())
        parts.betas = betas_from_scheduler_config(sched)
        parts.prediction_type = sched.get("prediction_type", "epsilon")
        if parts.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"{sched_file}: prediction_type '{parts.prediction_type}' is not supported (expected "
                              f"one of {', '.join(PREDICTION_TYPES)})")
        sampler = _SCHEDULER_SAMPLERS.get(sched.get("_class_name"), parts.defaults.sampler)
        parts.defaults = Defaults(sampler, parts.defaults.steps, parts.defaults.cfg_scale)
    vae_path = vae if vae is not None else (folder if (folder / "vae" / "config.json").is_file() else None)
    if vae_path is not None:
        parts.autoencoder = vae_config_for(vae_path)
    te_path = text_encoder if text_encoder is not None else (
        folder if (folder / "text_encoder" / "config.json").is_file() else None)
    if te_path is not None:
        parts.text_encoder = text_encoder_config_for(te_path, max_length=120)
    return parts


def detect_source(path: PathLike) -> str:
    """``run``, ``model_folder``, ``diffusers`` or ``official`` for a ``--checkpoint`` argument."""
    path = Path(path).expanduser()
    if path.is_file():
        return "official"
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if (path / "transformer").is_dir():
        return "diffusers"
    cfg = path / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("_class_name") in ("LatteTransformer3DModel", "LatteT2V"):
            return "official"
        if (path / "model.safetensors").is_file():
            return "model_folder"
    return "run"
