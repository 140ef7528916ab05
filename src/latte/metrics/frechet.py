"""Fréchet distance between two Gaussians, in float64, never NaN.

``d² = ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^{1/2})``.

Two ways to get ``tr (S1 S2)^{1/2}``:

* ``"sqrtm"`` (default): ``scipy.linalg.sqrtm(S1 @ S2)``, real part — what StyleGAN-V / Latte / pytorch-fid use.
  If the result is not finite (singular product, N < d), retry with ``eps * I`` added to both covariances.
* ``"eigh"``: ``sum sqrt(max(eig(A S2 A), 0))`` with ``A = S1^{1/2}`` from a symmetric eigendecomposition; about
  4x faster at d=400 and immune to tiny negative eigenvalues. Agrees with ``sqrtm`` to ~1e-9 on
  well-conditioned inputs.
"""
from __future__ import annotations

import warnings

import numpy as np

from latte.metrics.stats import FeatureStats

__all__ = ["frechet_distance", "frechet_distance_from_features", "trace_sqrt_product"]


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "sqrtm", eps: float = 1e-6) -> float:
    """``tr (sigma1 sigma2)^{1/2}`` for symmetric PSD ``(D, D)`` matrices, float64."""
    sigma1 = np.asarray(sigma1, np.float64)
    sigma2 = np.asarray(sigma2, np.float64)
    if method == "eigh":
        a = _psd_sqrt(sigma1)
        m = a @ sigma2 @ a
        w = np.linalg.eigvalsh((m + m.T) / 2)
        return float(np.sqrt(np.clip(w, 0.0, None)).sum())
    if method != "sqrtm":
        raise ValueError(f"unknown method {method!r}; choose 'sqrtm' or 'eigh'")
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns about near-singular inputs; we check finiteness ourselves
        root = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(root).all():
            offset = np.eye(sigma1.shape[0]) * eps
            root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    trace = np.trace(root)
    if not np.isfinite(trace):  # give up on sqrtm: the eigh form always returns a finite value
        return trace_sqrt_product(sigma1, sigma2, method="eigh")
    return float(np.real(trace))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "sqrtm") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); ``mu (D,)``, ``sigma (D, D)``."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2, method)
    return float(value)


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray, unbiased: bool = False,
                                   method: str = "sqrtm") -> float:
    """Fréchet distance between two feature sets ``(N1, D)`` and ``(N2, D)`` (biased covariance by default)."""
    s1, s2 = FeatureStats.from_features(features1), FeatureStats.from_features(features2)
    return frechet_distance(s1.mean(), s1.cov(unbiased), s2.mean(), s2.cov(unbiased), method)
