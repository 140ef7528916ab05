"""Text-to-video models to and from the diffusers ``LattePipeline`` folder layout.

Export writes ``transformer/`` (a ``LatteTransformer3DModel``: ``config.json`` +
``diffusion_pytorch_model.safetensors``), ``scheduler/`` (``DDIMScheduler`` on the training betas, without a
``variance_type`` so that ``LattePipeline`` hands the scheduler only the epsilon half), ``model_index.json``, and
copies of the VAE and the text encoder/tokenizer folders when the run names them. Only text-conditional,
interleaved, frame-patch, adaLN-single models (the official text-to-video layout) are expressible.

Import reads a pipeline folder or a bare ``transformer/`` folder into our model folder
(``Latte.save_pretrained``: ``config.json`` + ``model.safetensors``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Union

import numpy as np

from latte.config import ConfigError
from latte.io import load_json_mapping
from latte.models import Latte

PathLike = Union[str, Path]

__all__ = ["save_transformer", "load_transformer", "scheduler_config", "export_to_diffusers",
           "import_from_diffusers"]

TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"
EXPORT_RECORD = "latte_export.json"  # what diffusers configs cannot hold (see export_record)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".index.json")


def _diffusers_version() -> str:
    try:
        import diffusers

        return diffusers.__version__
    except ImportError:  # writing the files does not need diffusers
        return "0.30.0"


def save_transformer(model: Latte, folder: PathLike) -> Path:
    """Write ``model`` as a diffusers ``LatteTransformer3DModel`` folder; a clear error if it cannot be."""
    from safetensors.torch import save_file

    from latte.interop.official import t2v_config_to_official, t2v_state_dict_to_official

    try:
        config = t2v_config_to_official(model.config)
    except ConfigError as e:
        raise ConfigError(f"this model cannot be exported to diffusers: {e}. diffusers' LatteTransformer3DModel "
                          "is the text-to-video layout (model.conditioning 'text', variant 'interleaved', "
                          "patch_embedding 'frame', adaln 'single', temporal_pe 'absolute')") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "LatteTransformer3DModel", "_diffusers_version": _diffusers_version(), **config}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = t2v_state_dict_to_official(model, include_extras=False)
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(folder / TRANSFORMER_WEIGHTS))
    return folder


def load_transformer(folder: PathLike) -> Latte:
    """Our model from a diffusers pipeline folder (``transformer/``) or a ``LatteTransformer3DModel`` folder."""
    from latte.interop.official import load_latte_t2v

    folder = Path(folder)
    if (folder / "transformer" / "config.json").is_file():
        folder = folder / "transformer"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a diffusers LattePipeline folder with "
                                "transformer/, or a LatteTransformer3DModel folder)")
    return load_latte_t2v(str(folder)).model


def scheduler_config(betas: np.ndarray, noise_schedule: str = "linear", prediction_type: str = "epsilon") -> dict:
    """A ``DDIMScheduler`` config (the official text-to-video default) for the training noise schedule and the
    model's prediction type."""
    steps = len(betas)
    cfg = {"_class_name": "DDIMScheduler", "_diffusers_version": _diffusers_version(),
           "num_train_timesteps": steps, "prediction_type": prediction_type, "clip_sample": False,
           "set_alpha_to_one": True, "steps_offset": 0, "timestep_spacing": "leading", "thresholding": False}
    if noise_schedule == "linear":
        cfg.update(beta_schedule="linear", beta_start=float(betas[0]), beta_end=float(betas[-1]))
    else:
        cfg.update(beta_schedule="linear", trained_betas=[float(b) for b in betas])
    return cfg


def _copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy only the tokenizer files of ``src`` (which may also hold the model's config and weights)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(f, dst / f.name)


def _library_class(folder: Path, default: tuple[str, str]) -> tuple[str, str]:
    """``[library, class]`` for ``model_index.json`` from a copied component's config files."""
    cfg = folder / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if "_class_name" in data:
            return ("diffusers", data["_class_name"])
        if data.get("architectures"):
            return ("transformers", data["architectures"][0])
    tok = folder / "tokenizer_config.json"
    if tok.is_file():
        name = json.loads(tok.read_text()).get("tokenizer_class")
        if name:
            return ("transformers", name)
    return default


def export_to_diffusers(run_or_checkpoint: PathLike, out_dir: PathLike, ema: bool = True) -> dict:
    """Write a text-to-video run (or checkpoint, Latte model folder) as a diffusers ``LattePipeline`` folder.

    Returns ``{component: path or None}``; components whose source is unknown (no VAE folder in the run config,
    a packaged or missing text encoder) are left out and reported as None.
    """
    from latte.sampling import sources

    src = Path(run_or_checkpoint)
    kind = sources.detect_source(src)
    if kind == "run":
        parts = sources.load_run(src, ema=ema)
    elif kind == "model_folder":
        parts = sources.load_model_folder(src)
    else:
        raise ConfigError(f"{src}: export expects a run directory, a checkpoint directory or a Latte model folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Optional[Path]] = {"transformer": save_transformer(parts.model, out / "transformer")}
    sched = out / "scheduler"
    sched.mkdir(exist_ok=True)
    schedule = "linear" if np.allclose(np.linspace(parts.betas[0], parts.betas[-1], len(parts.betas)),
                                       parts.betas, rtol=0, atol=1e-12) else "custom"
    config = scheduler_config(parts.betas, schedule, parts.prediction_type)
    (sched / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    written["scheduler"] = sched
    components = {"transformer": ["diffusers", "LatteTransformer3DModel"], "scheduler": ["diffusers", "DDIMScheduler"],
                  "vae": [None, None], "text_encoder": [None, None], "tokenizer": [None, None]}

    ae = parts.autoencoder
    written["vae"] = None
    if ae is not None and ae.kind in ("sd_vae", "trained", "temporal_decoder") and ae.path:
        folder = Path(ae.path).expanduser() / (ae.subfolder or "")
        if folder.is_dir() and (folder / "config.json").is_file():
            _copy_tree(folder, out / "vae")
            written["vae"] = out / "vae"
            components["vae"] = list(_library_class(out / "vae", ("diffusers", "AutoencoderKL")))
    te = parts.text_encoder
    written["text_encoder"] = written["tokenizer"] = None
    if te is not None:
        from latte.encoders.text import _model_and_tokenizer_folders, minilm_path

        base = Path(te.path).expanduser() if te.path else minilm_path()
        model_dir, tok_dir = _model_and_tokenizer_folders(base)
        if model_dir.is_dir():
            _copy_tree(model_dir, out / "text_encoder")
            _copy_tokenizer(tok_dir, out / "tokenizer")
            written["text_encoder"], written["tokenizer"] = out / "text_encoder", out / "tokenizer"
            components["text_encoder"] = list(_library_class(out / "text_encoder", ("transformers", "AutoModel")))
            components["tokenizer"] = list(_library_class(out / "tokenizer", ("transformers", "AutoTokenizer")))
    index = {"_class_name": "LattePipeline", "_diffusers_version": _diffusers_version(), **components}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / EXPORT_RECORD).write_text(json.dumps(export_record(parts), indent=2) + "\n")
    written["record"] = out / EXPORT_RECORD
    return written


def export_record(parts) -> dict:
    """What diffusers' config cannot hold, written as ``latte_export.json`` beside ``model_index.json``: the
    training size (diffusers' ``sample_size`` may differ, see :func:`diffusers_sample_size`) and whether the
    source samples with truncated text features (``truncate_text``; diffusers' default ``mask_feature=True`` is
    ``truncate_text`` on)."""
    cfg = parts.model.config
    return {
        "source": parts.source,
        "input_size": cfg.input_size,
        "truncate_text": bool(parts.truncate_text),
        "prediction_type": parts.prediction_type,
        "note": ("diffusers.LattePipeline (mask_feature=True, its default) gives the video of `latte sample "
                 "--truncate-text on` (prompt and empty prompt cut to the prompt's valid tokens); "
                 + ("this model samples that way by default" if parts.truncate_text else
                    "the source samples with --truncate-text off (each prompt attends to its own valid tokens), "
                    "which diffusers cannot express: with guidance > 1 the videos differ")
                 + f". The model was trained for latents of {cfg.input_size}x{cfg.input_size}; diffusers' default "
                   "size comes from transformer/config.json sample_size: pass height/width"),
    }


def import_from_diffusers(folder: PathLike, out_dir: PathLike) -> Path:
    """Write our model folder (``config.json`` + ``model.safetensors``) from a diffusers Latte folder. A
    ``latte_export.json`` (written by :func:`export_to_diffusers`) restores the training ``input_size``."""
    model = load_transformer(folder)
    record = Path(folder) / EXPORT_RECORD
    if record.is_file():
        size = load_json_mapping(record, "latte export record").get("input_size")
        if isinstance(size, int) and size > 0:
            model.config = model.config.replace(input_size=size)
    model.save_pretrained(out_dir)
    return Path(out_dir)
