"""``latte cache CONFIG``: encode a dataset once into a latent cache (resumable; multi-GPU under torchrun)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from latte.config import ConfigError, apply_overrides, from_dict, resolve_config, to_dict
from latte.data.cache import CacheConfig
from latte.io import load_yaml_mapping
from latte.training.config import RunConfig
from latte.training.tasks.lavie import LavieRunConfig, is_lavie_config


def register(sub) -> None:
    p = sub.add_parser("cache", help="encode the dataset through the autoencoder (and text encoder) into data.cache_dir")
    p.add_argument("config", help="YAML with data/autoencoder/text_encoder/cache sections (a run config works)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cache.views=1")
    p.add_argument("--device", default=None, help="device for the encoders (default: cuda:LOCAL_RANK if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_cache_config(path: str | Path, overrides: Optional[list[str]] = None) -> CacheConfig:
    """Read a cache config (a path or a shipped config name); a run config (extra sections) is validated as
    such and its data / autoencoder / text_encoder sections reused.

    A LaVie run config (``lavie:`` section) caches what its stage trains from: base/interp latents of the stage's
    autoencoder; vsr latents of the upscaler's autoencoder plus the clip downsampled ×``lavie.scale_factor`` with
    ``lavie.downsample_kernel`` (``cache.low_res_factor`` / ``low_res_kernel``). Without text conditioning
    (``lavie.conditioning: none``) no text features are stored unless ``cache.text_features`` says so."""
    path = resolve_config(path)
    data = load_yaml_mapping(path)
    apply_overrides(data, overrides or [])
    cache_section = dict(data.pop("cache", {}) or {})
    try:
        if is_lavie_config(data):
            run = from_dict(LavieRunConfig, data)
            cache_section = _lavie_cache_options(run, cache_section)
        elif set(data) - {"data", "autoencoder", "text_encoder"}:
            run = from_dict(RunConfig, data)
        else:
            run = None
        if run is not None:
            data = {"data": to_dict(run.data), "autoencoder": to_dict(run.autoencoder),
                    "text_encoder": to_dict(run.text_encoder)}
        return from_dict(CacheConfig, {**data, "cache": cache_section})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _lavie_cache_options(run: LavieRunConfig, cache: dict) -> dict:
    """``cache:`` of a LaVie stage: the vsr condition's factor and kernel from ``lavie:`` (a different explicit
    value is an error), no text features for an unconditional stage unless asked."""
    lv = run.lavie
    if lv.stage == "vsr":
        for key, value in (("low_res_factor", lv.scale_factor), ("low_res_kernel", lv.downsample_kernel)):
            if cache.setdefault(key, value) != value:
                raise ConfigError(f"cache.{key}: the vsr stage trains on its clips downsampled with lavie."
                                  f"{'scale_factor' if key == 'low_res_factor' else 'downsample_kernel'} "
                                  f"({value}); got {cache[key]}")
    if lv.conditioning == "none":
        cache.setdefault("text_features", False)
    return cache


def run(args) -> int:
    import logging
    import os

    import torch

    from latte.data.cache import build_cache
    from latte.encoders import build_autoencoder, build_text_encoder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cache_config(args.config, args.overrides)
    device = args.device
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    autoencoder = build_autoencoder(cfg.autoencoder, device=device)
    text_encoder = None
    if cfg.cache.text_features and cfg.data.kind in ("captions", "synthetic"):
        text_encoder = build_text_encoder(cfg.text_encoder, device=device)
    index = build_cache(cfg, autoencoder, text_encoder, device=device, progress=not args.no_progress)
    if index is not None:
        print(f"latent cache ready: {index.parent} (train from it with train.use_cache: true)")
    return 0
