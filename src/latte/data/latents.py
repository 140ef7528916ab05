"""Reading a finished latent cache (written by :mod:`latte.data.cache`): :class:`CachedLatentDataset`.

Kept apart from the writer so that :func:`latte.data.build_dataset` (which returns this dataset for
``train.use_cache``) and the writer (which encodes the items of ``build_dataset``) do not import each other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open

from latte.config import ConfigError, to_dict
from latte.data.config import DataConfig
from latte.encoders.config import AutoencoderConfig
from latte.io import load_json_mapping

__all__ = ["CACHE_FORMAT", "DATA_KEYS", "AUTOENCODER_KEYS", "CacheMismatchError", "CachedLatentDataset",
           "config_differences", "data_section"]

CACHE_FORMAT = 1
# settings that change the cached tensors; any difference makes an existing cache unusable
DATA_KEYS = ("kind", "path", "image_size", "num_frames", "frame_interval", "frame_sampling", "short_clips",
             "min_frames", "crop", "antialias", "hflip", "extensions", "class_names", "synthetic")
AUTOENCODER_KEYS = ("kind", "path", "subfolder", "single_file_config", "sample_posterior", "scaling_factor",
                    "patch_factor")


def data_section(data: DataConfig) -> dict:
    """The data settings a cache records (``DATA_KEYS``)."""
    return {k: to_dict(getattr(data, k)) for k in DATA_KEYS}


class CacheMismatchError(ConfigError):
    """An existing cache was made with other settings (or another encoder) than requested."""


def config_differences(old: dict, new: dict, prefix: str = "", defaults: Optional[dict] = None) -> list[str]:
    """``"key: cache has 'a', now 'b'"`` for every (nested) key whose value differs. A key missing from ``old``
    whose new value is its entry in ``defaults`` (same nesting) is no difference: an option added after the
    cache was made, left at the behaviour the cache was made with."""
    out = []
    defaults = defaults or {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key not in old and key in defaults and b == defaults[key]:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = defaults.get(key) if isinstance(defaults.get(key), dict) else None
            out += config_differences(a, b, f"{prefix}{key}.", sub)
        elif a != b:
            out.append(f"{prefix}{key}: cache has {str(a)[:80]!r}, now {str(b)[:80]!r}")
    return out


class CachedLatentDataset(torch.utils.data.Dataset):
    """Items of a finished cache: ``{latents (C, F, h, w) float32, index, y?, caption?, text? (L, dim),
    text_mask? (L,), low_res? (3, F, H/s, W/s)}``. Training (``split == "train"``) picks a random view per access, otherwise view 0.

    ``expected_data`` / ``expected_autoencoder``: the current config sections; a cache made with other
    settings raises :class:`CacheMismatchError`. ``check_autoencoder(ae)`` compares encoder identities.
    """

    def __init__(self, cache_dir: str | Path, split: str = "train", expected_data: Optional[DataConfig] = None,
                 expected_autoencoder: Optional[AutoencoderConfig] = None):
        self.root = Path(cache_dir).expanduser()
        header_path, index_path = self.root / "cache.json", self.root / "index.json"
        if not index_path.exists():
            state = "unfinished (no index.json)" if header_path.exists() else "missing"
            raise ConfigError(f"data.cache_dir: the latent cache at {self.root} is {state}; run `latte cache CONFIG`")
        self.header = load_json_mapping(header_path, "latent cache header")
        if self.header.get("format") != CACHE_FORMAT:
            raise CacheMismatchError(f"{header_path}: cache format {self.header.get('format')}, expected {CACHE_FORMAT}")
        diffs = []
        if expected_data is not None:
            diffs += config_differences(self.header["data"], data_section(expected_data), "data.",
                                        data_section(DataConfig()))
        if expected_autoencoder is not None:
            diffs += config_differences(self.header["autoencoder"],
                                  {k: getattr(expected_autoencoder, k) for k in AUTOENCODER_KEYS}, "autoencoder.")
        if diffs:
            raise CacheMismatchError(f"the latent cache at {self.root} was made with other settings; re-run "
                                     "`latte cache` into a new data.cache_dir. Differences: " + "; ".join(diffs[:8]))
        index = load_json_mapping(index_path, "latent cache index")
        views: dict[int, list[dict]] = {}
        for entry in index["entries"]:
            views.setdefault(entry["item"], []).append(entry)
        self.items = [views[i] for i in sorted(views)]
        if not self.items:
            raise ConfigError(f"data.cache_dir: the latent cache at {self.root} has no entries "
                              f"({len(index['failures'])} clips failed to load when it was written)")
        self.training = split == "train"
        # items draw from the global RNG only for a random view per training access (SeededItems reads this)
        self.draws_random = self.training and max(len(v) for v in self.items) > 1
        self.class_names = self.header.get("class_names")
        self._handles: dict[str, object] = {}

    def check_autoencoder(self, autoencoder) -> None:
        """Refuse latents made by another encoder (compares ``identity()`` with the recorded one)."""
        diffs = config_differences(self.header["autoencoder_identity"], autoencoder.identity(), "autoencoder identity.")
        if diffs:
            raise CacheMismatchError(f"the latent cache at {self.root} was made with another autoencoder: "
                                     + "; ".join(diffs[:8]))

    def __len__(self) -> int:
        return len(self.items)

    def _tensor(self, shard: str, key: str) -> torch.Tensor:
        handle = self._handles.get(shard)
        if handle is None:  # opened lazily per process (DataLoader workers)
            handle = self._handles[shard] = safe_open(str(self.root / shard), framework="pt")
        return handle.get_tensor(key)

    def __getitem__(self, index: int) -> dict:
        views = self.items[index]
        entry = views[int(torch.randint(len(views), ()).item())] if self.training and len(views) > 1 else views[0]
        item = {"latents": self._tensor(entry["shard"], f"{entry['key']}/latents").float(), "index": index}
        for name in ("y", "caption"):
            if name in entry:
                item[name] = entry[name]
        if self.header.get("low_res"):
            item["low_res"] = self._tensor(entry["shard"], f"{entry['key']}/low_res").float()
        if entry.get("text"):
            item["text"] = self._tensor(entry["shard"], f"{entry['key']}/text").float()
            item["text_mask"] = self._tensor(entry["shard"], f"{entry['key']}/text_mask")
        return item

    def __getstate__(self):  # safetensors handles are not picklable: reopen in each worker
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
