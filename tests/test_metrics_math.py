"""Known answers for the Fréchet distance, feature statistics and the Inception Score (spec §4.2)."""
import math

import numpy as np
import pytest
from scipy import linalg

from latte.metrics.frechet import frechet_distance, frechet_distance_from_features
from latte.metrics.inception_score import inception_score
from latte.metrics.stats import FeatureStats, load_stats, save_stats

METHODS = ["sqrtm", "eigh"]


@pytest.mark.parametrize("method", METHODS)
def test_equal_covariance_is_squared_mean_difference(method):
    d = 256  # the pytorch-fid case uses d=2048; the answer is the same closed form
    assert frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d), method) == pytest.approx(d, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_diagonal_known_answer(method):
    fd = frechet_distance(np.zeros(3), np.diag([1.0, 4, 9]), np.ones(3), np.diag([4.0, 1, 1]), method)
    assert fd == pytest.approx(9.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_non_commuting_2x2_known_answer(method):
    s1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    s2 = np.diag([1.0, 3.0])
    fd = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, method)
    assert fd == pytest.approx(8 - 2 * math.sqrt(14), abs=1e-13)
    assert 8 - 2 * math.sqrt(14) == pytest.approx(0.5166852264521173, abs=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_scaled_covariance_known_answer(method):
    a = np.random.RandomState(0).randn(400, 400)
    s1 = a @ a.T / 400
    fd = frechet_distance(np.zeros(400), s1, np.zeros(400), 1.5 ** 2 * s1, method)
    assert fd == pytest.approx(99.51748091299099, abs=1e-6)


def test_commuting_with_rotation_known_answer():
    rng = np.random.RandomState(3)
    q, _ = np.linalg.qr(rng.randn(50, 50))
    a, b = rng.uniform(0.1, 5, 50), rng.uniform(0.1, 5, 50)
    mu1, mu2 = rng.randn(50), rng.randn(50)
    truth = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in METHODS:
        fd = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T, method)
        assert fd == pytest.approx(truth, abs=1e-9)


def test_torch_fidelity_nan_regression():
    rng = np.random.RandomState(1)
    f1, f2 = rng.randn(4, 4), rng.randn(4, 4)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    # the bug: real eigenvalues with a tiny negative one make a naive sqrt NaN
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.sqrt(np.linalg.eigvals(s1 @ s2))).any()
    for method in METHODS:
        fd = frechet_distance(mu1, s1, mu2, s2, method)
        assert np.isfinite(fd)
        assert fd == pytest.approx(4.753837617472013, abs=1e-9)


def test_identity_symmetry_and_invariance():
    rng = np.random.RandomState(7)
    x = rng.randn(300, 16) @ rng.randn(16, 16)
    y = rng.randn(300, 16) * 1.3 + 0.2
    trace = np.trace(np.cov(x, rowvar=False))
    assert abs(frechet_distance_from_features(x, x)) < 1e-8 * trace
    assert frechet_distance_from_features(x, y) == pytest.approx(frechet_distance_from_features(y, x), rel=1e-10)
    q, _ = np.linalg.qr(rng.randn(16, 16))
    shift = rng.randn(16)
    moved = frechet_distance_from_features(x @ q + shift, y @ q + shift)
    assert moved == pytest.approx(frechet_distance_from_features(x, y), rel=1e-8)


def _scipy_reference(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    root = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        off = np.eye(s1.shape[0]) * 1e-6
        root = linalg.sqrtm((s1 + off) @ (s2 + off))
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)))


def test_cross_implementation_grid_never_nan():
    rng = np.random.RandomState(2023)
    for n in (2, 8, 64, 512):
        for c in (2, 16, 64):
            f1, f2 = rng.randn(n, c), rng.randn(n, c)
            ours = frechet_distance_from_features(f1, f2, unbiased=True)
            assert np.isfinite(ours), (n, c)
            if n > c:  # well-posed: both implementations are accurate
                assert ours == pytest.approx(_scipy_reference(f1, f2), abs=1e-5), (n, c)


def test_streaming_stats_match_numpy_and_merge():
    x = np.random.RandomState(0).randn(200, 12)
    for chunk in (1, 7, 64):
        s = FeatureStats(12)
        for i in range(0, 200, chunk):
            s.update(x[i:i + chunk])
        np.testing.assert_allclose(s.mean(), x.mean(0), atol=1e-12)
        np.testing.assert_allclose(s.cov(), np.cov(x, rowvar=False, bias=True), atol=1e-12)
        np.testing.assert_allclose(s.cov(unbiased=True), np.cov(x, rowvar=False), atol=1e-12)
    merged = FeatureStats.from_features(x[0::2]).merge(FeatureStats.from_features(x[1::2]))
    np.testing.assert_allclose(merged.cov(), np.cov(x, rowvar=False, bias=True), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(x[:1]).cov()
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats(12).update(np.full((2, 12), np.nan))


def test_stats_npz_round_trip(tmp_path):
    x = np.random.RandomState(0).randn(50, 5)
    s = FeatureStats.from_features(x)
    save_stats(tmp_path / "real.npz", s.mean(), s.cov(), s.count, {"name": "fvd2048_16f", "seed": 3})
    mu, sigma, n, protocol = load_stats(tmp_path / "real.npz")
    np.testing.assert_array_equal(mu, s.mean())
    np.testing.assert_array_equal(sigma, s.cov())
    assert n == 50 and protocol == {"name": "fvd2048_16f", "seed": 3}
    np.savez(tmp_path / "bad.npz", mu=mu)
    with pytest.raises(ValueError, match="sigma"):
        load_stats(tmp_path / "bad.npz")


def test_sample_fd_converges_to_truth():
    d = 16
    mu2, s2 = np.full(d, 0.5), np.diag(np.linspace(0.5, 2, d))
    truth = frechet_distance(np.zeros(d), np.eye(d), mu2, s2)
    assert truth == pytest.approx(4.88625, abs=1e-4)
    rng = np.random.RandomState(1)
    errors = []
    for n in (256, 16384):
        a = rng.randn(n, d)
        b = rng.randn(n, d) * np.sqrt(np.diag(s2)) + mu2
        errors.append(abs(frechet_distance_from_features(a, b) - truth))
    assert errors[1] < errors[0]


def test_inception_score_uniform_is_one():
    mean, std = inception_score(np.full((100, 7), 1 / 7))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_balanced_one_hot_is_k():
    k = 8
    probs = np.eye(k)[np.tile(np.arange(k), 10)]  # 10 splits of 8 rows, each with every class once
    mean, std = inception_score(probs, splits=10, shuffle_seed=None)
    assert mean == pytest.approx(k, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_entropy_identity_and_stylegan_v_splits():
    rng = np.random.RandomState(0)
    p = rng.dirichlet(np.ones(5) * 0.5, size=2048)
    mean, _ = inception_score(p, splits=1, shuffle_seed=None)
    marg = p.mean(0)
    h_marg = -(marg * np.log(marg)).sum()
    h_cond = -(p * np.log(p)).sum(1).mean()
    assert mean == pytest.approx(math.exp(h_marg - h_cond), rel=1e-10)
    # direct transcription of the StyleGAN-V video IS loop
    q = p.copy()
    np.random.RandomState(42).shuffle(q)
    scores = []
    for i in range(10):
        part = q[i * 2048 // 10:(i + 1) * 2048 // 10]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    assert inception_score(p) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-12)
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(np.log(p))
