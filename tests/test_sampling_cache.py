"""Step cache (TeaCache): exactness at threshold 0, edge steps, guidance rows, batches, samplers, sidecars, resume."""
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from latte.encoders.autoencoders import IdentityAutoencoder
from latte.sampling import SAMPLERS, LattePipeline, save_videos
from latte.sampling.cache import TeaCache, cache_spec, count_model_calls, fit_rescale, parse_cache
from helpers import REFERENCE, randomize, tiny, tiny_model, torchrun, write_run

MODEL_CASES = [dict(variant=v, injection=i, cond=c) for v, i, c in itertools.product(
    ["interleaved", "late_fusion", "factorized_attention", "factorized_heads"], ["adaln", "tokens"],
    ["none", "class", "text"])] + [dict(adaln="single", cond="text"), dict(patch="tubelet", temporal="rope")]


def model_kwargs(model, rows):
    cfg = model.config
    if cfg.conditioning == "class":
        return {"y": torch.arange(rows) % 4}  # rows of the null class (3) as in a guided batch
    if cfg.conditioning == "text":
        g = torch.Generator().manual_seed(3)
        return {"text": torch.randn(rows, 3, cfg.text_dim, generator=g), "text_mask": torch.ones(rows, 3).bool()}
    return {}


def trajectory(calls=6, rows=4):
    """Inputs of consecutive model calls: a slowly changing latent and decreasing timesteps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 2, 4, 4, 4, generator=g)
    return [(x * (1 - 0.02 * k), torch.full((rows,), 900 - 150 * k)) for k in range(calls)]


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_threshold_zero_equals_the_model_exactly_and_edges_are_computed(case):
    model = randomize(tiny(**case)).eval()
    kw = model_kwargs(model, 4)
    steps = trajectory()
    exact = TeaCache(0.0).session(model, num_videos=2, num_calls=len(steps))
    greedy = TeaCache(1e9).session(model, num_videos=2, num_calls=len(steps))  # skips all it may
    with torch.no_grad():
        for x, t in steps:
            expected = model(x, t, **kw)
            assert torch.equal(exact(x, t, **kw), expected)
            assert torch.isfinite(greedy(x, t, **kw)).all()
    assert exact.computed == [6, 6]
    assert greedy.computed == [2, 2]  # the first and the last call only


def test_skipped_calls_reuse_the_residual_of_the_last_computed_call():
    model = randomize(tiny(cond="class")).eval()
    kw = model_kwargs(model, 2)
    (x0, t0), (x1, t1) = trajectory(2, rows=2)[:2]
    session = TeaCache(1e9).session(model, num_videos=2, num_calls=3)
    with torch.no_grad():
        session(x0, t0, **kw)
        skipped = session(x1, t1, **kw)
        tok0, ctx0, _ = model.embed(x0, t0, **kw)
        residual = model.run_blocks(tok0, ctx0) - tok0
        tok1, _, c1 = model.embed(x1, t1, **kw)
        torch.testing.assert_close(skipped, model.head(tok1 + residual, c1, x1.shape[-2:]), rtol=0, atol=1e-6)


def test_first_and_last_calls_are_never_skipped_and_guided_rows_decide_together(monkeypatch):
    """Spy on the blocks: which rows ran at which call. The cond/uncond rows of a video always run together."""
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    ran = []
    original = model.run_blocks
    monkeypatch.setattr(model, "run_blocks", lambda tok, ctx: ran.append(tok.shape[0]) or original(tok, ctx))
    out = pipe(classes=[0, 1, 2], sampler="ddim", steps=12, cfg_scale=4.0, output_type="latent", progress=False,
               batch_size=3, cache="teacache:1000")
    assert [r["cache_computed_calls"] for r in out.records] == [2, 2, 2]
    assert ran == [6, 6]  # call 0 and call 11, both all 3 videos x (cond, uncond)
    ran.clear()
    out = pipe(classes=[0, 1, 2], sampler="ddim", steps=12, cfg_scale=4.0, output_type="latent", progress=False,
               batch_size=3, cache="teacache:0.05")
    assert ran[0] == 6 and ran[-1] == 6 and all(n % 2 == 0 for n in ran)  # whole videos only (2 rows each)
    assert sum(ran) == 2 * sum(r["cache_computed_calls"] for r in out.records)


def test_batch_of_videos_equals_each_video_alone():
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    kw = dict(classes=[0, 2], seed=3, sampler="ddpm", steps=20, cfg_scale=4.0, output_type="latent", progress=False,
              cache="teacache:0.05")
    both = pipe(batch_size=2, **kw)
    alone = [pipe(indices=[i], **kw) for i in range(2)]
    for i in range(2):
        torch.testing.assert_close(both.videos[i], alone[i].videos[0], rtol=1e-4, atol=1e-5)
        assert both.records[i]["cache_computed_calls"] == alone[i].records[0]["cache_computed_calls"]


def test_positive_threshold_reduces_model_evaluations_and_stays_close():
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    kw = dict(classes=[1], sampler="ddim", steps=25, cfg_scale=3.0, output_type="latent", progress=False)
    base = pipe(**kw).videos
    exact = pipe(cache="teacache:0", **kw)
    torch.testing.assert_close(exact.videos, base, rtol=0, atol=0)
    assert exact.records[0]["cache_computed_calls"] == 25
    previous = 25
    for threshold in (0.05, 0.2):
        out = pipe(cache=TeaCache(threshold), **kw)
        computed = out.records[0]["cache_computed_calls"]
        assert computed < previous and out.records[0]["cache_model_calls"] == 25
        previous = computed
        rel = ((out.videos - base).norm() / base.norm()).item()
        assert 0 < rel < 0.05, rel


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_with_the_cache(sampler):
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    kw = dict(classes=[0, 1], sampler=sampler, steps=6, cfg_scale=2.0, output_type="latent", progress=False,
              batch_size=2)
    out = pipe(cache="teacache:0.3", **kw)
    assert torch.isfinite(out.videos).all()
    calls = count_model_calls(sampler, 6, pipe.betas)
    assert all(r["cache_model_calls"] == calls for r in out.records)  # the cache knew the last call
    assert all(2 <= r["cache_computed_calls"] <= calls for r in out.records)
    torch.testing.assert_close(pipe(cache="teacache:0", **kw).videos, pipe(**kw).videos, rtol=0, atol=0)


def test_text_model_with_guidance_and_sidecar_records(tmp_path):

    class Text:  # a deterministic stand-in text encoder: (B, L, text_dim) features
        def encode(self, prompts):
            g = torch.Generator().manual_seed(len(prompts[0]))
            return torch.randn(len(prompts), 3, 8, generator=g), torch.ones(len(prompts), 3, dtype=torch.bool)

        def null_embedding(self):
            return torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool)

        def identity(self):
            return {"kind": "test"}

    torch.manual_seed(0)
    model = tiny_model(conditioning="text", text_dim=8)
    pipe = LattePipeline(model, IdentityAutoencoder(), Text())
    kw = dict(prompts=["a red ball", "two boxes"], sampler="dpm-solver", steps=10, cfg_scale=5.0, progress=False,
              batch_size=2)
    np.testing.assert_array_equal(pipe(cache="teacache:0", **kw).videos, pipe(**kw).videos)
    out = pipe(cache="teacache:0.2", **kw)
    save_videos(out, tmp_path, ("gif",))
    side = json.loads((tmp_path / "00001.json").read_text())
    assert side["cache"] == "teacache:0.2" and side["cache_model_calls"] == 10
    assert 2 <= side["cache_computed_calls"] < 10
    assert pipe(**kw).records[0]["cache"] == "none"


def test_cache_specs_and_errors():
    assert parse_cache(None) is None and parse_cache("none") is None and parse_cache(" None ") is None
    assert parse_cache("teacache:0.1") == TeaCache(0.1) and parse_cache(TeaCache(0.2)).spec() == "teacache:0.2"
    assert cache_spec(None) == "none" and cache_spec("TeaCache:0.10") == "teacache:0.1"
    with pytest.raises(ValueError, match="unknown kind 'deepcach'"):
        parse_cache("deepcach:3")
    with pytest.raises(ValueError, match="threshold 'fast' is not a number"):
        parse_cache("teacache:fast")
    with pytest.raises(ValueError, match="unknown teacache rescale 'pub'"):
        parse_cache("teacache:0.1:pub")
    with pytest.raises(ValueError, match=">= 0"):
        TeaCache(-1.0)


def test_fit_rescale_recovers_a_polynomial_from_uncached_traces():
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    session = TeaCache(0).session(model, num_videos=1, num_calls=count_model_calls("ddim", 20, pipe.betas))
    model_fn = pipe._model_fn({"y": torch.tensor([1])}, {"y": torch.tensor([3])}, 3.0, session)
    from latte.sampling import sample_loop

    sample_loop(model_fn, torch.randn(1, 3, 4, 8, 8), "ddim", 20, pipe.betas)
    assert len(session.trace) == 20 and np.isnan(session.trace[0][0]).all()
    coeffs = fit_rescale([session], degree=1)
    xs = np.concatenate([c for c, _ in session.trace[1:]])
    ys = np.concatenate([o for _, o in session.trace[1:]])
    assert len(coeffs) == 2 and np.abs(np.polyval(coeffs, xs) - ys).mean() <= np.abs(ys - ys.mean()).mean()


def test_cli_rejects_a_bad_cache_spec(tmp_path, capsys):
    from latte.cli import main

    write_run(tmp_path / "run")
    code = main(["sample", "--checkpoint", str(tmp_path / "run"), "--class", "bird", "--out", str(tmp_path / "out"),
                 "--cache", "teacache:x", "--device", "cpu", "--quiet"])
    assert code == 2 and "threshold 'x' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _env():
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.mark.slow
def test_two_processes_with_the_cache_make_the_same_videos_as_one_and_resume(tmp_path):
    write_run(tmp_path / "run")
    base = ["--checkpoint", str(tmp_path / "run"), "--class", "bird", "--class", "car", "--sampler", "ddim",
            "--steps", "12", "--cache", "teacache:0.05", "--format", "gif", "--device", "cpu", "--quiet",
            "--num-videos", "4"]
    two = tmp_path / "two"
    res = torchrun(base + ["--out", str(two)], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    one = tmp_path / "one"
    cmd = [sys.executable, "-m", "latte", "sample", *base, "--out", str(one), "--batch-size", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for i in range(4):
        assert (two / f"{i:05d}.gif").read_bytes() == (one / f"{i:05d}.gif").read_bytes()
        a, b = (json.loads((d / f"{i:05d}.json").read_text()) for d in (two, one))
        assert a["cache"] == b["cache"] == "teacache:0.05"
        assert a["cache_computed_calls"] == b["cache_computed_calls"] < 12
    original = (two / "00002.gif").read_bytes()
    (two / "00002.json").unlink()  # interrupted: resume remakes exactly this video
    res = torchrun(base + ["--out", str(two)], tmp_path)
    assert res.returncode == 0 and "1 made now" in res.stdout, res.stderr[-2000:]
    assert (two / "00002.gif").read_bytes() == original


# -- DeepCache on the LaVie U-Nets (the tiny official fixtures) ---------------------------------------------------


def tiny_unet(stage):
    """A tiny LaVie U-Net of ``stage`` (official fixture weights) and its inputs: (model, sample, text, kwargs)."""
    import os

    from latte.official import load_lavie

    d = torch.load(os.path.join(REFERENCE, f"lavie_{stage}_tiny.pt"), weights_only=True)
    model = load_lavie({"ema": d["state_dict"]} if stage == "vsr" else d["state_dict"], stage, d["config"]).model
    kw = {"low_res": d["low_res"], "class_labels": d["noise_level"]} if stage == "vsr" else {}
    return model.eval(), d["x"] if "x" in d else d["sample"], d["encoder_hidden_states"], kw


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_deepcache_interval_one_equals_the_unet_and_cached_calls_reuse_deep_features(stage):
    from latte.sampling.cache import DeepCache

    model, x, text, kw = tiny_unet(stage)
    times = [torch.full((x.shape[0],), 999 - 150 * k) for k in range(5)]
    exact = DeepCache(1).session(model, num_videos=2, num_calls=len(times))
    every3 = DeepCache(3).session(model, num_videos=2, num_calls=len(times))
    with torch.no_grad():
        outs = []
        for t in times:
            expected = model(x, t, text, **kw)
            assert torch.equal(exact(x, t, text, **kw), expected)
            outs.append((every3(x, t, text, **kw), expected))
        # full at calls 0, 3 and the last (4); calls 1, 2 reuse the deep features of call 0
        for k in (0, 3, 4):
            assert torch.equal(*outs[k])
        for k in (1, 2):
            assert not torch.allclose(*outs[k], atol=1e-4)
        # a cached call at the full call's input reproduces the full output: the skip bookkeeping is right
        again = DeepCache(5).session(model, num_videos=2, num_calls=5)
        full = again(x, times[0], text, **kw)
        torch.testing.assert_close(again(x, times[0], text, **kw), full, rtol=1e-5, atol=1e-6)
    assert exact.computed == [5, 5] and every3.computed == [3, 3] and again.computed == [1, 1]


def test_deepcache_in_a_sampling_loop_runs_the_deep_levels_only_on_full_calls_and_stays_close():
    from latte.sampling import sample_loop
    from latte.sampling.cache import DeepCache

    model, x, text, _ = tiny_unet("base")
    betas = np.linspace(1e-4, 0.02, 1000)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    runs = {"mid": 0, "outer": 0}
    model.mid_block.register_forward_hook(lambda *_: runs.__setitem__("mid", runs["mid"] + 1))
    model.up_blocks[-1].register_forward_hook(lambda *_: runs.__setitem__("outer", runs["outer"] + 1))

    def sample(cache):
        forward = cache.session(model, 2, count_model_calls("ddim", 20, betas)) if cache else model
        out = sample_loop(lambda xt, t: forward(xt, t, text), noise, "ddim", 20, betas, learn_sigma=False)
        return out, forward

    base, _ = sample(None)
    exact, _ = sample(DeepCache(1))
    assert torch.equal(exact, base)
    runs.update(mid=0, outer=0)
    cached, session = sample(DeepCache(3))
    assert session.computed == [8, 8] and session.calls == 20  # calls 0, 3, ..., 18 and the last
    assert runs == {"mid": 8, "outer": 20}  # the deep path on full calls only, the outer level every call
    assert 0 < ((cached - base).norm() / base.norm()).item() < 0.1


def test_caches_refuse_the_wrong_model():
    from latte.sampling.cache import DeepCache

    latte = tiny_model(conditioning="class", num_classes=3)
    with pytest.raises(ValueError, match="deepcache needs a LaVie U-Net"):
        DeepCache(2).session(latte, 1, 10)
    with pytest.raises(ValueError, match="teacache needs a Latte transformer"):
        TeaCache(0.1).session(tiny_unet("base")[0], 1, 10)
    with pytest.raises(ValueError, match="levels \\(2\\) must be below"):
        DeepCache(2, levels=2).session(tiny_unet("base")[0], 1, 10)
    pipe = LattePipeline(latte, IdentityAutoencoder())
    with pytest.raises(ValueError, match="is for the LaVie U-Nets"):
        pipe(classes=[0], steps=2, cache="deepcache:2", progress=False)
    assert parse_cache("deepcache:3") == DeepCache(3) and parse_cache("deepcache:2:2").spec() == "deepcache:2:2"
    with pytest.raises(ValueError, match="deepcache:INTERVAL"):
        parse_cache("deepcache:x")


def test_rescale_polynomial_spec_round_trips_and_scales_the_decision():
    cache = parse_cache("teacache:0.1:poly=2,0")
    assert cache == TeaCache(0.1, (2.0, 0.0)) and parse_cache(cache.spec()) == cache
    model = tiny_model(conditioning="class", num_classes=3)
    pipe = LattePipeline(model, IdentityAutoencoder())
    kw = dict(classes=[1], sampler="ddim", steps=25, cfg_scale=3.0, output_type="latent", progress=False)
    doubled = pipe(cache="teacache:0.2:poly=2,0", **kw)  # 2·d against 0.2 decides as d against 0.1
    plain = pipe(cache="teacache:0.1", **kw)
    assert doubled.records[0]["cache_computed_calls"] == plain.records[0]["cache_computed_calls"]
    torch.testing.assert_close(doubled.videos, plain.videos, rtol=0, atol=0)
    with pytest.raises(ValueError, match="poly= takes comma-separated numbers"):
        parse_cache("teacache:0.1:poly=a,b")
