"""Streaming float64 feature statistics (mean and covariance), mergeable across processes, saved as ``.npz``.

The covariance is the *biased* one (divided by N) by default, as in StyleGAN-V / Latte's FVD; pytorch-fid and
TF-GAN divide by N-1 (``unbiased=True``). At N=2048, d=400 the two differ by about 0.05 %.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from latte.io import InputError

__all__ = ["FeatureStats", "save_stats", "load_stats"]


class FeatureStats:
    """Accumulates ``sum x`` and ``sum x x^T`` of feature rows ``(N, D)`` in float64."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.sum = np.zeros(self.dim, dtype=np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        features = np.asarray(features)
        stats = cls(features.shape[1])
        stats.update(features)
        return stats

    def update(self, features: np.ndarray) -> None:
        """Add feature rows ``(N, D)`` (any float dtype; converted to float64)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or Inf; the feature extractor or the inputs are broken")
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Combine with the statistics of a disjoint set (e.g. another process's shard), in place."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        self.count += other.count
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        return self

    def mean(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("no features were accumulated")
        return self.sum / self.count

    def cov(self, unbiased: bool = False) -> np.ndarray:
        """Covariance ``(D, D)``; divided by N (default, StyleGAN-V/Latte) or by N-1 (``unbiased``)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        mu = self.mean()
        biased = self.sum_outer / self.count - np.outer(mu, mu)
        biased = (biased + biased.T) / 2  # exact symmetry despite rounding
        return biased * self.count / (self.count - 1) if unbiased else biased


def save_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray, count: int, protocol: dict) -> None:
    """Write ``mu``, ``sigma``, ``n`` and the JSON ``protocol`` that produced them (pytorch-fid compatible keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), n=np.int64(count),
             protocol=np.array(json.dumps(protocol, sort_keys=True)))


def load_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """Read ``(mu, sigma, n, protocol)`` from a ``.npz`` (a pytorch-fid file without ``n``/``protocol`` works too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"statistics file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: not a readable statistics .npz ({e})") from None
    if not hasattr(archive, "files"):
        raise InputError(f"{path}: a single array, expected an .npz with 'mu' and 'sigma'")
    with archive as f:
        missing = [k for k in ("mu", "sigma") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; expected an .npz with 'mu' and 'sigma'")
        mu = f["mu"].astype(np.float64)
        sigma = f["sigma"].astype(np.float64)
        count = int(f["n"]) if "n" in f.files else -1
        protocol = json.loads(str(f["protocol"])) if "protocol" in f.files else {}
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: sigma has shape {sigma.shape}, expected {(mu.shape[0], mu.shape[0])}")
    return mu, sigma, count, protocol
