"""Run the metrics on real and generated clips under one recorded, deterministic protocol.

:func:`evaluate` returns a JSON-safe dict holding every knob (clip counts, frames, strides, seeds, resolution,
detector weight hashes, which clips were used) next to the numbers; ``latte eval`` is a thin wrapper.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from latte.config import ConfigError, option, to_dict
from latte.metrics.clips import (ClipDataset, VideoEntry, codec_path, extract_features, scan_videos, select_clips,
                                 selection_digest)
from latte.metrics.frechet import frechet_distance
from latte.metrics.stats import FeatureStats, load_stats, save_stats

__all__ = ["METRICS", "PRESETS", "EvalSettings", "make_settings", "evaluate", "format_table", "plot_results"]

METRICS = ("fvd", "fid", "is", "synthetic-fvd", "attribute-accuracy", "temporal")
PRESETS = {
    # StyleGAN-V / Latte fvd2048_16f; Latte reads real clips with stride 3 (its training frame_interval)
    # frames: centre crop + resize to 256 (LANCZOS), as Latte's convert_videos_to_frames before the detectors
    "fvd2048_16f": {"num_real": 2048, "num_fake": 2048, "num_frames": 16, "real_stride": 3, "fake_stride": 1,
                    "resolution": 256, "resize_kernel": "lanczos"},
    "fvd2048_16f_taichi": {"num_real": 2048, "num_fake": 2048, "num_frames": 16, "real_stride": 6,
                           "fake_stride": 1, "resolution": 256, "resize_kernel": "lanczos"},
    # Latte's isv2048_ucf: 2048 generated 16-frame clips, 10 splits
    "isv2048_ucf": {"num_fake": 2048, "num_frames": 16, "fake_stride": 1, "is_splits": 10, "resolution": 256,
                    "resize_kernel": "lanczos"},
}

Source = Union[str, Path, list]  # a folder, "synthetic", or a list of VideoEntry (latte.metrics.clips)


@dataclass
class EvalSettings:
    """Every knob of an evaluation; all of them are written into the result JSON."""

    metrics: list[str] = option(help=f"metrics to compute: {', '.join(METRICS)}", factory=lambda: ["fvd"])
    num_real: int = option(2048, "real clips (fewer if fewer eligible videos exist; the count used is recorded)")
    num_fake: int = option(2048, "generated clips")
    num_frames: int = option(16, "frames per clip")
    real_stride: int = option(3, "temporal stride of real clips (Latte: 3; 6 for Taichi)")
    fake_stride: int = option(1, "temporal stride of generated clips")
    seed: int = option(0, "seed of the video subset and the real clips' random start frames")
    resolution: Optional[int] = option(None, "centre-crop to a square and resize frames to this side first (the "
                                             "presets: 256, as Latte's frame converter, so non-square videos such "
                                             "as UCF-101's 320x240 are cropped, not squashed); null keeps them (the "
                                             "detectors then resize to their input size without cropping)", min=1)
    resize_kernel: Literal["lanczos", "bilinear-antialias"] = option(
        "lanczos", "kernel of that resize: 'lanczos' (PIL, the reference converter) or 'bilinear-antialias' "
                   "(torch)")
    batch_size: int = option(8, "clips per detector batch")
    num_workers: int = option(0, "DataLoader worker processes for decoding")
    device: str = option("cpu", "torch device of the detectors")
    covariance: str = option("biased", "covariance normalisation: biased (divide by N, StyleGAN-V/Latte) or "
                                       "unbiased (N-1, pytorch-fid/TF-GAN)")
    sqrt_method: str = option("sqrtm", "matrix square root: sqrtm (scipy, reference parity) or eigh (faster)")
    is_splits: int = option(10, "Inception Score splits (RandomState(42) shuffle first)")
    i3d_path: Optional[str] = option(None, "FVD detector: i3d_pretrained_400.pt or i3d_torchscript.pt")
    inception_path: Optional[str] = option(None, "FID detector: pt_inception-2015-12-05-6726825d.pth or "
                                                 "NVIDIA's TorchScript inception-2015-12-05.pt")
    c3d_path: Optional[str] = option(None, "IS detector: c3d_ucf101.pt or conv3d_deepnetA_ucf.npz")
    c3d_mean_path: Optional[str] = option(None, "mean2.npz for the npz C3D (default: beside the weights)")
    classifier_path: Optional[str] = option(None, "synthetic-data classifier folder (latte train-classifier)")
    real_stats: Optional[str] = option(None, "folder caching real-data statistics (real_<metric>.npz); reused "
                                             "when the recorded protocol matches, an error when it does not")
    progress: bool = option(True, "show progress bars")

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ConfigError(f"metrics: unknown {unknown}; choose from {', '.join(METRICS)}")
        if self.covariance not in ("biased", "unbiased") or self.sqrt_method not in ("sqrtm", "eigh"):
            raise ConfigError("covariance must be biased|unbiased and sqrt_method sqrtm|eigh")
        for key in ("num_real", "num_fake", "num_frames", "real_stride", "fake_stride", "batch_size", "is_splits"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


def make_settings(preset: str = "fvd2048_16f", **overrides) -> EvalSettings:
    """Settings of a named protocol (:data:`PRESETS`), with explicit ``overrides`` (None values are skipped)."""
    from latte.config import from_dict

    if preset not in PRESETS:
        raise ConfigError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(EvalSettings, values)


def step_of(source: Source, entries: list[VideoEntry]) -> Optional[int]:
    """Training step of a sample folder: a sidecar ``step``/``checkpoint_step``, else ``step_<N>`` in the
    sidecar's ``checkpoint`` path (what ``latte sample`` writes), else in the folder path."""
    texts = []
    for entry in entries[:1]:
        for key in ("step", "checkpoint_step", "train_step"):
            if isinstance(entry.meta.get(key), int):
                return entry.meta[key]
        if isinstance(entry.meta.get("checkpoint"), str):
            texts.append(entry.meta["checkpoint"])
    if isinstance(source, (str, Path)):
        texts.append(str(source))
    for text in texts:
        match = re.search(r"step[_-]?(\d+)", text)
        if match:
            return int(match.group(1))
    return None


class _Side:
    """One set of clips (real or generated) and the features computed on it, cached per detector."""

    def __init__(self, name: str, entries: list[VideoEntry], clips: list[tuple[int, int]], stride: int,
                 settings: EvalSettings, random_offset: bool):
        self.name, self.entries, self.clips = name, entries, clips
        self.dataset = ClipDataset(entries, clips, settings.num_frames, stride, settings.resolution,
                                   settings.resize_kernel)
        self.settings = settings
        self.features: dict[str, np.ndarray] = {}
        self.record = {"source": name, "videos_found": len(entries), "clips": len(clips),
                       "frames": settings.num_frames, "stride": stride, "random_offset": random_offset,
                       "seed": settings.seed, "resolution": settings.resolution,
                       "resize": ({"size": settings.resolution, "kernel": settings.resize_kernel,
                                   "crop": "centred min(H, W) square, then resize"}
                                  if settings.resolution else None),
                       "codec_path": codec_path(entries),
                       "selection_sha256": selection_digest(entries, clips)}

    def features_of(self, key: str, detector) -> np.ndarray:
        if key not in self.features:
            s = self.settings
            self.features[key] = extract_features(detector, self.dataset, s.batch_size, s.num_workers, s.device,
                                                  desc=f"{key} {Path(self.name).name}", progress=s.progress)
        return self.features[key]

    def videos(self) -> torch.Tensor:
        """All clips as one uint8 tensor ``(N, 3, T, H, W)`` (for the small synthetic-data metrics)."""
        return torch.stack([self.dataset[i] for i in range(len(self.dataset))])


def _open_source(source: Source) -> tuple[str, list[VideoEntry]]:
    if isinstance(source, list):
        return "<in-memory>", source
    return str(source), scan_videos(source)


def _make_side(source: Source, settings: EvalSettings, real: bool, seed_offset: int = 0) -> _Side:
    name, entries = _open_source(source)
    count = settings.num_real if real else settings.num_fake
    stride = settings.real_stride if real else settings.fake_stride
    clips = select_clips([e.num_frames for e in entries], count, settings.num_frames, stride, random_offset=real,
                         seed=settings.seed + seed_offset)
    if len(clips) < 2:
        raise ValueError(f"{name}: only {len(clips)} of {len(entries)} videos have the "
                         f"{settings.num_frames * stride} frames a clip needs (frames x stride)")
    return _Side(name, entries, clips, stride, settings, random_offset=real)


def _stats(features: np.ndarray, settings: EvalSettings) -> tuple[np.ndarray, np.ndarray]:
    s = FeatureStats.from_features(features)
    return s.mean(), s.cov(unbiased=settings.covariance == "unbiased")


def _real_stats(metric: str, detector, real: Optional[_Side], settings: EvalSettings) -> tuple:
    """Real (mu, sigma), computed or read from the cache folder; the protocol must match to reuse."""
    protocol = {"metric": metric, "detector_sha256": detector.identity()["sha256"],
                "covariance": settings.covariance,
                **({k: v for k, v in real.record.items()} if real is not None else {})}
    path = Path(settings.real_stats) / f"real_{metric}.npz" if settings.real_stats else None
    if path is not None and path.is_file():
        mu, sigma, _, saved = load_stats(path)
        keys = ["metric", "detector_sha256", "covariance"] + (list(real.record) if real is not None else [])
        diff = {k: (saved.get(k), protocol.get(k)) for k in keys if saved.get(k) != protocol.get(k)}
        if diff:
            raise ValueError(f"{path}: cached real statistics were made with another protocol "
                             f"(saved vs now: {diff}); delete the file or point --real-stats elsewhere")
        return mu, sigma, saved
    if real is None:
        raise ValueError(f"metric {metric}: no real data given and no cached statistics at {path}")
    mu, sigma = _stats(real.features_of(metric, detector), settings)
    if path is not None:
        save_stats(path, mu, sigma, len(real.clips), protocol)
    return mu, sigma, protocol


def _load_detectors(settings: EvalSettings) -> dict:
    from latte.metrics.networks.c3d import load_c3d
    from latte.metrics.networks.i3d import load_i3d
    from latte.metrics.networks.inception import load_inception

    det = {}
    m = set(settings.metrics)
    needs = {"fvd": "i3d_path", "fid": "inception_path", "is": "c3d_path",
             "synthetic-fvd": "classifier_path", "attribute-accuracy": "classifier_path"}
    for metric, key in needs.items():
        if metric in m and not getattr(settings, key):
            raise ConfigError(f"metric {metric} needs {key} (the detector weights; see docs/eval.md)")
    if "fvd" in m:
        det["fvd"] = load_i3d(settings.i3d_path).to(settings.device)
    if "fid" in m:
        det["fid"] = load_inception(settings.inception_path).to(settings.device)
    if "is" in m:
        det["is"] = load_c3d(settings.c3d_path, settings.c3d_mean_path).to(settings.device)
    if m & {"synthetic-fvd", "attribute-accuracy"}:
        from latte.metrics.synthetic import load_classifier

        detector, meta = load_classifier(settings.classifier_path)
        det["classifier"] = detector.to(settings.device)
        det["classifier_meta"] = meta
    return det


def _synthetic_real(settings: EvalSettings, real: Source, meta: dict, count: int) -> tuple[_Side, _Side]:
    """Two disjoint real sets of ``count`` clips: rendered from the classifier's spec, or halves of ``real``."""
    from latte.metrics.clips import tensor_videos
    from latte.metrics.synthetic import synthetic_real_videos

    cfg = meta["train_config_obj"]
    if real is None or str(real) == "synthetic":
        videos = synthetic_real_videos(cfg, 2 * count, settings.num_frames, progress=settings.progress)
        sides = []
        for half in (videos[:count], videos[count:]):
            entries = tensor_videos(half)
            sides.append(_Side("synthetic", entries,
                               [(i, 0) for i in range(len(entries))], 1, settings, random_offset=False))
        return sides[0], sides[1]
    pool = _make_side(real, settings, real=True, seed_offset=17)
    if len(pool.clips) < 4:
        raise ValueError(f"{real}: synthetic FVD needs at least 4 real clips for the real-vs-real baseline")
    order = np.random.default_rng(settings.seed).permutation(len(pool.clips))
    half = min(count, len(order) // 2)
    return tuple(_Side(pool.name, pool.entries, [pool.clips[i] for i in sorted(order[a:a + half])],
                       settings.real_stride, settings, random_offset=True) for a in (0, half))


def evaluate(settings: EvalSettings, real: Optional[Source], fakes: list[Source],
             detectors: Optional[dict] = None) -> dict:
    """Compute ``settings.metrics`` for every generated source against ``real``; returns the result dict.

    ``real``: a folder, ``"synthetic"`` (render real clips from the classifier's data spec), a list of
    :class:`~latte.metrics.clips.VideoEntry`, or None when cached real statistics are used.
    ``detectors``: already loaded detectors by metric (``fvd``, ``fid``, ``is``, ``classifier`` +
    ``classifier_meta``) instead of loading them from the settings' paths.
    """
    from latte import __version__

    detectors = detectors if detectors is not None else _load_detectors(settings)
    image_metrics = {"fvd", "fid"} & set(settings.metrics)
    real_side = None
    if real is not None and str(real) != "synthetic" and (image_metrics or "temporal" in settings.metrics):
        real_side = _make_side(real, settings, real=True)
    result = {"latte_version": __version__, "created": datetime.datetime.now().isoformat(timespec="seconds"),
              "settings": to_dict(settings), "real": real_side.record if real_side else None,
              "detectors": {k: v.identity() for k, v in detectors.items() if hasattr(v, "identity")}, "runs": []}
    real_cache = {}
    for metric in sorted(image_metrics):
        mu, sigma, protocol = _real_stats(metric, detectors[metric], real_side, settings)
        real_cache[metric] = (mu, sigma)
        result.setdefault("real_stats", {})[metric] = protocol
    synthetic_real = None
    for fake in fakes:
        side = _make_side(fake, settings, real=False, seed_offset=1)
        run = {"fake": {**side.record, "step": step_of(fake, side.entries)}, "metrics": {}}
        out = run["metrics"]
        for metric in sorted(image_metrics):
            mu_f, sigma_f = _stats(side.features_of(metric, detectors[metric]), settings)
            out[metric] = frechet_distance(*real_cache[metric], mu_f, sigma_f, settings.sqrt_method)
        if "is" in settings.metrics:
            from latte.metrics.inception_score import inception_score

            if settings.num_frames != 16:
                raise ValueError("the C3D Inception Score needs 16-frame clips (--frames 16)")
            out["is_mean"], out["is_std"] = inception_score(side.features_of("is", detectors["is"]),
                                                            splits=settings.is_splits, shuffle_seed=42)
        if "synthetic-fvd" in settings.metrics:
            if synthetic_real is None:
                synthetic_real = _synthetic_real(settings, real, detectors["classifier_meta"], len(side.clips))
                result["synthetic_real"] = [s.record for s in synthetic_real]
            feats = [s.features_of("classifier", detectors["classifier"]) for s in synthetic_real]
            fake_feats = side.features_of("classifier", detectors["classifier"])[:len(feats[0])]
            real_a = _stats(feats[0], settings)
            out["synthetic_fvd"] = frechet_distance(*real_a, *_stats(fake_feats, settings), settings.sqrt_method)
            out["synthetic_fvd_real_baseline"] = frechet_distance(*real_a, *_stats(feats[1], settings),
                                                                  settings.sqrt_method)
        if "attribute-accuracy" in settings.metrics:
            out["attribute_accuracy"] = _attribute_accuracy(side, detectors, settings)
        if "temporal" in settings.metrics:
            from latte.metrics.synthetic import temporal_consistency

            out["temporal"] = temporal_consistency(side.videos())
            if real_side is not None:
                out["temporal_real"] = temporal_consistency(real_side.videos())
        result["runs"].append(run)
    return result


def _attribute_accuracy(side: _Side, detectors: dict, settings: EvalSettings) -> dict:
    from latte.metrics.synthetic import attribute_accuracy, requested_attributes

    meta = detectors["classifier_meta"]
    heads = meta["heads"]
    preds: dict[str, list] = {k: [] for k in heads}
    loader = torch.utils.data.DataLoader(side.dataset, batch_size=settings.batch_size)
    for batch in loader:
        for k, v in detectors["classifier"].predict(batch.to(settings.device)).items():
            preds[k].append(v.cpu().numpy())
    predicted = {k: np.concatenate(v) for k, v in preds.items()}
    spec = meta["train_config_obj"].synthetic
    requested = [requested_attributes(side.entries[i].meta, heads, spec) for i, _ in side.clips]
    return attribute_accuracy(predicted, requested, heads)


def scalar_metrics(run: dict) -> dict[str, float]:
    """Flatten one run's metrics to ``name -> number`` (nested dicts become ``outer.inner``)."""
    flat = {}
    for key, value in run["metrics"].items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": float(v) for k, v in value.items() if k != "num_videos"})
        else:
            flat[key] = float(value)
    return flat


def format_table(result: dict) -> str:
    """A plain-text table: one row per generated source, one column per metric."""
    rows = [(Path(r["fake"]["source"]).name or r["fake"]["source"], r["fake"]["step"], scalar_metrics(r))
            for r in result["runs"]]
    columns = sorted({k for _, _, m in rows for k in m})
    header = ["fake", "step"] + columns
    lines = [[name, "" if step is None else str(step)] + [f"{m[c]:.4f}" if c in m else "" for c in columns]
             for name, step, m in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] +
                     [fmt.format(*line) for line in lines])


def plot_results(result: dict, path: str | Path) -> Path:
    """PNG with one panel per metric: value against training step (or source index when steps are unknown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    steps = [r["fake"]["step"] for r in runs]
    use_steps = all(s is not None for s in steps)
    xs = steps if use_steps else list(range(len(runs)))
    metrics = sorted({k for r in runs for k in scalar_metrics(r)})
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4 * max(1, len(metrics)), 3.2), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        pts = sorted((x, scalar_metrics(r).get(name)) for x, r in zip(xs, runs) if name in scalar_metrics(r))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        if name == "synthetic_fvd":
            base = [scalar_metrics(r)["synthetic_fvd_real_baseline"] for r in runs]
            ax.axhline(float(np.mean(base)), color="gray", linestyle="--", label="real vs real")
            ax.legend()
        ax.set_title(name)
        ax.set_xlabel("training step" if use_steps else "sample folder")
        if not use_steps:
            ax.set_xticks(xs, [Path(r["fake"]["source"]).name for r in runs], rotation=30, fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
