"""Inception Score from class probabilities.

``IS = exp( mean_i KL(p(y|x_i) || p(y)) )`` per split; the result is the mean and the population std over
splits. Presets: StyleGAN-V / Latte ``isv2048_ucf`` = 10 splits after a ``RandomState(42)`` shuffle, eps 0;
TGANv2 = 1 split, eps 1e-20.
"""
from __future__ import annotations

import numpy as np

__all__ = ["inception_score"]


def inception_score(probs: np.ndarray, splits: int = 10, shuffle_seed: int | None = 42,
                    eps: float = 0.0) -> tuple[float, float]:
    """``probs (N, K)`` rows summing to 1 → ``(mean, std)`` of the per-split scores (float64)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits:
        raise ValueError(f"expected probabilities (N, K) with N >= splits={splits}, got {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("inception_score expects probabilities (softmax outputs), not logits")
    if shuffle_seed is not None:
        p = p.copy()
        np.random.RandomState(shuffle_seed).shuffle(p)
    scores = []
    n = p.shape[0]
    for i in range(splits):  # split boundaries i*N//splits, as StyleGAN-V does
        part = p[i * n // splits:(i + 1) * n // splits] + eps
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.where(part > 0, np.log(part), 0.0)  # 0 * log 0 = 0
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore"):
            log_marginal = np.where(marginal > 0, np.log(marginal), 0.0)
        kl = (part * (log_p - log_marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
