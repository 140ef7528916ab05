"""Step caching: skip model evaluations whose result barely changes from the previous sampling step.

A cache is a *configuration* (:class:`TeaCache`; ``None`` for no cache), written as a compact spec string:

* ``"none"``                   no cache (every step runs the whole model);
* ``"teacache:T"``             TeaCache with threshold ``T`` (e.g. ``teacache:0.1``); ``T = 0`` is the uncached
                               sampler exactly; larger is faster and less faithful;
* ``"teacache:T:RESCALE"``     with a named rescaling polynomial from :data:`RESCALE_POLYNOMIALS`, or
                               ``poly=A,B,...`` its coefficients (highest power first, e.g. from
                               :func:`fit_rescale`): ``teacache:0.1:poly=2.1,0.004``;
* ``"deepcache:N[:LEVELS]"``   (LaVie U-Nets, :class:`DeepCache`) a full U-Net step every ``N`` calls; the calls
                               in between recompute only the ``LEVELS`` (default 1) outermost resolution levels
                               and reuse the deep features of the last full step. ``N = 1`` is uncached exactly.

:func:`parse_cache` turns a spec (or ``None`` / a config object) into a config. For every batch of videos the
pipeline opens a fresh :meth:`TeaCache.session`: a drop-in replacement for the model's forward that keeps the
cache state of that one sampling call, so the samplers know nothing about caching and no state leaks between
calls or batches.

TeaCache on Latte (per model call ``k`` of a sampling call of ``K`` calls):

1. embed the input (:meth:`Latte.embed`) and compute the first block's timestep-modulated input
   ``m_k = modulate(norm1(tokens), shift, scale)`` (adaLN models; for ``injection='tokens'`` models, which have
   no modulation, ``norm1(tokens) + c`` with ``c`` the timestep (+ class/text) conditioning vector);
2. per video, ``d_k = mean|m_k − m_{k−1}| / mean|m_{k−1}|`` over all of that video's rows (cond and uncond rows
   of a classifier-free-guidance batch together), optionally mapped through a polynomial ``d ← P(d)``;
   ``m_{k-1}`` is the previous call's input, whether it ran the blocks or not;
3. accumulate ``A += d_k`` since the video's last computed step. If ``k`` is the first or last call, or
   ``A >= threshold``: run the blocks (:meth:`Latte.run_blocks`) for that video's rows, store the residual
   ``blocks(tokens) − tokens`` per row and reset ``A = 0``; otherwise reuse ``tokens + residual``;
4. finish with :meth:`Latte.head` (final layer, unpatchify) for every row.

Guidance and batches. The decision is taken per *video* from all of its rows and applies to all of them (the
conditional and unconditional rows of one guided forward always agree, so the guidance combination never mixes
a fresh and a stale half); the residual is kept per row. Videos of one batch decide independently: when only
some videos need their blocks, only their rows are run. So a video is the same whether sampled alone or in a
batch (up to the float non-associativity of batched kernels) and resumable multi-process sampling reproduces
it. Rows are grouped as ``copies × videos`` (row ``r`` belongs to video ``r % num_videos``), the layout of
:func:`latte.diffusion.classifier_free_guidance`.

Rescaling polynomial. The TeaCache paper fits, per model, a polynomial mapping the input change to the output
change. We ship no third-party coefficients (we could not verify the published Latte-1 numbers); the default is
no rescaling, and :func:`fit_rescale` fits one from an uncached sampling trace (``TeaCacheSession.trace``) --
see BENCHMARKS.md (not yet fitted on a trained model).

DeepCache on the U-Nets (:class:`DeepCache`, arXiv 2312.00858). A full call runs the U-Net and keeps, per row,
the input of the up level that mirrors down level ``LEVELS − 1`` (the output of the deeper up levels). A cached
call runs ``conv_in`` and the down levels ``0 … LEVELS − 1`` for their skips (the last one's downsampled
output, which feeds the deep path, is dropped; its temporal module is skipped), takes the kept deep features
and runs the up levels ``n − LEVELS … n − 1`` with the fresh skips, then the output head. The schedule depends
only on the call index (full at calls ``0, N, 2N, …`` and at the last call), so it is the same for every row
and batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from latte.models.latte import BlockContext, Latte, modulate
from latte.models.unet3d import UNet3D, UNetContext
from latte.models.unet3d import run as run_block
from latte.sampling.samplers import OFFICIAL_SAMPLERS, check_sampler, make_scheduler

__all__ = ["TeaCache", "TeaCacheSession", "DeepCache", "DeepCacheSession", "CacheLike", "parse_cache", "cache_spec",
           "count_model_calls", "fit_rescale", "RESCALE_POLYNOMIALS"]

# name -> polynomial coefficients, highest power first (numpy.polyval order); None = no rescaling
RESCALE_POLYNOMIALS: dict[str, Optional[tuple[float, ...]]] = {
    "none": None,
}


@dataclass(frozen=True)
class TeaCache:
    """TeaCache configuration: ``threshold`` on the accumulated (rescaled) relative L1 change of the first
    block's modulated input; ``rescale``: a name of :data:`RESCALE_POLYNOMIALS` (``'none'``: raw change) or
    polynomial coefficients, highest power first."""

    threshold: float
    rescale: Union[str, tuple[float, ...]] = "none"

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"teacache threshold must be >= 0, got {self.threshold}")
        if isinstance(self.rescale, str):
            if self.rescale not in RESCALE_POLYNOMIALS:
                raise ValueError(f"unknown teacache rescale '{self.rescale}' (choose from: "
                                 f"{', '.join(RESCALE_POLYNOMIALS)}, or poly=A,B,... coefficients)")
        else:
            object.__setattr__(self, "rescale", tuple(float(c) for c in self.rescale))
            if not self.rescale:
                raise ValueError("teacache rescale polynomial: no coefficients")

    @property
    def coefficients(self) -> Optional[tuple[float, ...]]:
        """The rescaling polynomial (highest power first), None for no rescaling."""
        return RESCALE_POLYNOMIALS[self.rescale] if isinstance(self.rescale, str) else self.rescale

    def spec(self) -> str:
        """The compact string form, e.g. ``'teacache:0.1'`` (what sidecars record and ``--cache`` takes)."""
        text = f"teacache:{self.threshold:g}"
        if isinstance(self.rescale, tuple):
            return f"{text}:poly=" + ",".join(f"{c:.6g}" for c in self.rescale)
        return text if self.rescale == "none" else f"{text}:{self.rescale}"

    def session(self, model: Latte, num_videos: int, num_calls: int) -> "TeaCacheSession":
        """Fresh cache state for one sampling call of ``num_videos`` videos and ``num_calls`` model calls."""
        return TeaCacheSession(model, self, num_videos, num_calls)


@dataclass(frozen=True)
class DeepCache:
    """DeepCache configuration for the LaVie U-Nets: a full step every ``interval`` calls; ``levels``: resolution
    levels recomputed at the other calls (1 = only the outermost; at most the U-Net's levels − 1)."""

    interval: int
    levels: int = 1

    def __post_init__(self):
        if self.interval < 1 or self.levels < 1:
            raise ValueError(f"deepcache interval and levels must be >= 1, got {self.interval}, {self.levels}")

    def spec(self) -> str:
        return f"deepcache:{self.interval}" + ("" if self.levels == 1 else f":{self.levels}")

    def session(self, model: UNet3D, num_videos: int, num_calls: int) -> "DeepCacheSession":
        """Fresh cache state for one sampling call (``num_videos`` is accepted for the common interface)."""
        return DeepCacheSession(model, self, num_videos, num_calls)


CacheLike = Union[None, str, TeaCache, DeepCache]


def parse_cache(spec: CacheLike) -> Union[None, TeaCache, DeepCache]:
    """``None`` / ``'none'`` / ``''`` → None; ``'teacache:T[:RESCALE]'`` → :class:`TeaCache`;
    ``'deepcache:N[:LEVELS]'`` → :class:`DeepCache`; a config → itself."""
    if spec is None or isinstance(spec, (TeaCache, DeepCache)):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"cache: expected None, a spec string, a TeaCache or a DeepCache, got "
                        f"{type(spec).__name__}")
    text = spec.strip().lower()
    if text in ("", "none", "off"):
        return None
    kind, _, rest = text.partition(":")
    if kind not in ("teacache", "deepcache"):
        raise ValueError(f"cache '{spec}': unknown kind '{kind}' (expected 'none', 'teacache:THRESHOLD' "
                         "(e.g. teacache:0.1) or, for U-Nets, 'deepcache:INTERVAL' (e.g. deepcache:3))")
    parts = rest.split(":") if rest else []
    if kind == "deepcache":
        if not 1 <= len(parts) <= 2 or not all(x.isdigit() for x in parts):
            raise ValueError(f"cache '{spec}': expected deepcache:INTERVAL or deepcache:INTERVAL:LEVELS "
                             "(integers)")
        return DeepCache(*(int(x) for x in parts))
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"cache '{spec}': expected teacache:THRESHOLD or teacache:THRESHOLD:RESCALE")
    try:
        threshold = float(parts[0])
    except ValueError:
        raise ValueError(f"cache '{spec}': threshold '{parts[0]}' is not a number") from None
    rescale = parts[1] if len(parts) == 2 else "none"
    if rescale.startswith("poly="):
        try:
            return TeaCache(threshold, tuple(float(c) for c in rescale[len("poly="):].split(",")))
        except ValueError:
            raise ValueError(f"cache '{spec}': poly= takes comma-separated numbers") from None
    return TeaCache(threshold, rescale)


def cache_spec(cache: CacheLike) -> str:
    """The spec string of any cache argument (``'none'`` when off)."""
    config = parse_cache(cache)
    return "none" if config is None else config.spec()


def count_model_calls(sampler: str, steps: int, betas: np.ndarray) -> int:
    """How many times :func:`latte.sampling.sample_loop` calls the model for ``sampler`` / ``steps`` (the cache
    must know the last call: it is never skipped). Heun-type schedulers call it about twice per step."""
    from latte.diffusion.gaussian import space_timesteps

    check_sampler(sampler)
    if sampler in OFFICIAL_SAMPLERS:
        return len(space_timesteps(len(betas), OFFICIAL_SAMPLERS[sampler][1].format(steps=steps)))
    scheduler = make_scheduler(sampler, betas)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def first_block_input(model: Latte, tok: torch.Tensor, ctx: BlockContext, c: torch.Tensor) -> torch.Tensor:
    """The timestep-modulated input of the first block ``(B, F', N, D)`` (see the module docstring)."""
    blk = model.blocks[0]
    h = blk.norm1(tok)
    if blk.tokens:  # no adaLN: the conditioning enters as tokens; add its vector so timestep changes show
        return h + c[:, :, None]
    b, fc = ctx.cond.shape[:2]
    if blk.adaln_single:
        m = blk.scale_shift_table + ctx.cond.reshape(b, fc, blk.n_mod, -1)
    else:
        m = blk.adaLN_modulation(ctx.cond).reshape(b, fc, blk.n_mod, -1)
    return modulate(h, m[:, :, 0, None], m[:, :, 1, None])


def _select_rows(ctx: BlockContext, rows: torch.Tensor) -> BlockContext:
    """The block context of a subset of the batch rows."""
    if ctx.image_text is not None or ctx.num_video < ctx.cond.shape[1]:
        raise ValueError("the step cache supports video-only sampling (num_images = 0)")
    pick = lambda v: None if v is None else v[rows]  # noqa: E731
    return dataclasses.replace(ctx, cond=ctx.cond[rows], text=pick(ctx.text), text_bias=pick(ctx.text_bias))


class TeaCacheSession:
    """A Latte forward with TeaCache for one sampling call; call it as the model: ``session(x, t, **kwargs)``.

    ``computed[v]``: model calls that ran the blocks for video ``v``; ``calls``: calls so far; ``trace``: per call,
    ``(input_change (V,), output_change (V,))`` relative L1 changes from the previous call (NaN on the first),
    for fitting a rescaling polynomial (:func:`fit_rescale`).
    """

    def __init__(self, model: Latte, config: TeaCache, num_videos: int, num_calls: int):
        if not isinstance(model, Latte):
            raise ValueError(f"teacache needs a Latte transformer, got {type(model).__name__} (U-Nets: deepcache)")
        if num_videos < 1 or num_calls < 1:
            raise ValueError(f"a cache session needs num_videos >= 1 and num_calls >= 1, got {num_videos}, "
                             f"{num_calls}")
        self.model, self.config = model, config
        self.num_videos, self.num_calls = num_videos, num_calls
        coeffs = config.coefficients
        self.poly = None if coeffs is None else np.asarray(coeffs, dtype=np.float64)
        self.calls = 0
        self.computed = [0] * num_videos
        self.accumulated = np.zeros(num_videos)
        self.trace: list[tuple[np.ndarray, np.ndarray]] = []
        self._previous_input: Optional[torch.Tensor] = None
        self._previous_output: Optional[torch.Tensor] = None
        self._residual: Optional[torch.Tensor] = None

    def _per_video_change(self, new: torch.Tensor, old: torch.Tensor) -> np.ndarray:
        """``mean|new − old| / mean|old|`` over each video's rows → ``(V,)`` float64."""
        v = self.num_videos
        diff = (new - old).abs().double().reshape(-1, v, new[0].numel()).sum(dim=(0, 2))
        base = old.abs().double().reshape(-1, v, old[0].numel()).sum(dim=(0, 2))
        return (diff / base.clamp(min=1e-12)).cpu().numpy()

    def _decide(self, change: Optional[np.ndarray]) -> np.ndarray:
        """Which videos run their blocks at this call (bool ``(V,)``); updates the accumulators."""
        edge = self.calls == 0 or self.calls >= self.num_calls - 1
        if edge or change is None or self.config.threshold <= 0:
            compute = np.ones(self.num_videos, dtype=bool)
        else:
            step = np.polyval(self.poly, change) if self.poly is not None else change
            self.accumulated += step
            compute = self.accumulated >= self.config.threshold
        self.accumulated[compute] = 0.0
        return compute

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        rows_total = x.shape[0]
        if rows_total % self.num_videos:
            raise ValueError(f"cache session for {self.num_videos} videos got a batch of {rows_total} rows")
        model = self.model
        tok, ctx, c = model.embed(x, t, **kwargs)
        modulated = first_block_input(model, tok, ctx, c)
        first = self._previous_input is None or self._residual is None or self._residual.shape != tok.shape
        change = None if first else self._per_video_change(modulated, self._previous_input)
        compute = self._decide(change)
        self._previous_input = modulated

        row_compute = torch.from_numpy(np.tile(compute, rows_total // self.num_videos)).to(tok.device)
        if compute.all():
            out = model.run_blocks(tok, ctx)
            self._residual = out - tok
        elif not compute.any():
            out = tok + self._residual
        else:
            rows = row_compute.nonzero().squeeze(1)
            fresh = model.run_blocks(tok[rows], _select_rows(ctx, rows))
            out = tok + self._residual
            out[rows] = fresh
            self._residual[rows] = fresh - tok[rows]
        for v in np.flatnonzero(compute):
            self.computed[v] += 1
        self.calls += 1
        result = model.head(out, c, x.shape[-2:])
        out_change = np.full(self.num_videos, np.nan) if first else self._per_video_change(result,
                                                                                            self._previous_output)
        self.trace.append((np.full(self.num_videos, np.nan) if change is None else change, out_change))
        self._previous_output = result
        return result

    def record(self, video: int) -> dict:
        """What the sidecar of video ``video`` (its position in the batch) records about the cache."""
        return {"cache": self.config.spec(), "cache_computed_calls": self.computed[video],
                "cache_model_calls": self.calls}


def fit_rescale(traces: Sequence[TeaCacheSession], degree: int = 4) -> tuple[float, ...]:
    """Least-squares polynomial (highest power first) from input change to output change, over the calls of
    uncached sessions (``TeaCache(0)``, which run every call and record both changes)."""
    xs, ys = [], []
    for session in traces:
        for change_in, change_out in session.trace:
            keep = np.isfinite(change_in) & np.isfinite(change_out)
            xs.extend(change_in[keep])
            ys.extend(change_out[keep])
    if len(xs) <= degree:
        raise ValueError(f"fit_rescale: {len(xs)} points are too few for a degree-{degree} polynomial")
    return tuple(float(a) for a in np.polyfit(np.asarray(xs), np.asarray(ys), degree))


class DeepCacheSession:
    """A UNet3D forward with DeepCache for one sampling call; call it as the U-Net (same arguments).

    ``computed[v]``: full calls (the same for every video); ``calls``: calls so far.
    """

    def __init__(self, model: UNet3D, config: DeepCache, num_videos: int, num_calls: int):
        if not isinstance(model, UNet3D):
            raise ValueError(f"deepcache needs a LaVie U-Net (UNet3D), got {type(model).__name__} (Latte: teacache)")
        n = len(model.down_blocks)
        if config.levels >= n:
            raise ValueError(f"deepcache levels ({config.levels}) must be below the U-Net's {n} resolution levels")
        if num_videos < 1 or num_calls < 1:
            raise ValueError(f"a cache session needs num_videos >= 1 and num_calls >= 1, got {num_videos}, "
                             f"{num_calls}")
        self.model, self.config = model, config
        self.num_videos, self.num_calls = num_videos, num_calls
        self.calls = 0
        self.computed = [0] * num_videos
        self._deep: Optional[torch.Tensor] = None  # (B·F, C, h, w): input of the first recomputed up level

    def _shallow_down(self, x: torch.Tensor, ctx: UNetContext) -> list[torch.Tensor]:
        """Skips of ``conv_in`` and the outer ``levels`` down levels (what the outer up levels consume)."""
        model, ckpt = self.model, self.model.config.gradient_checkpointing
        skips = [x]
        for i in range(self.config.levels):
            x, level_skips = model.down_blocks[i](x, ctx, ckpt)
            skips += level_skips
            if i < self.config.levels - 1 and model.config.temporal_modules:
                x = run_block(model.down_temporal_blocks[i], x, ctx, ckpt)
        skips.pop()  # the last level's downsampled output feeds only the deep path
        return skips

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, timestep, encoder_hidden_states=None, encoder_attention_mask=None,
                 **kwargs) -> torch.Tensor:
        model, cfg = self.model, self.model.config
        ckpt = cfg.gradient_checkpointing
        x, ctx = model.embed(sample, timestep, encoder_hidden_states, encoder_attention_mask, **kwargs)
        n, first_up = len(model.up_blocks), len(model.up_blocks) - self.config.levels
        full = (self.calls % self.config.interval == 0 or self.calls >= self.num_calls - 1 or self._deep is None
                or self._deep.shape[0] != x.shape[0])
        if full:  # the U-Net forward, keeping the deep features
            skips = [x]
            for i, down in enumerate(model.down_blocks):
                x, level_skips = down(x, ctx, ckpt)
                skips += level_skips
                if cfg.temporal_modules:
                    x = run_block(model.down_temporal_blocks[i], x, ctx, ckpt)
            x = model.mid_block(x, ctx, ckpt)
            if cfg.temporal_modules:
                x = run_block(model.mid_temporal_block, x, ctx, ckpt)
            ups = range(n)
        else:
            skips, x = self._shallow_down(x, ctx), self._deep
            ups = range(first_up, n)
        for i in ups:
            if i == first_up:
                self._deep = x
            up = model.up_blocks[i]
            level_skips = skips[-len(up.resnets):]
            del skips[-len(up.resnets):]
            size = tuple(skips[-1].shape[-2:]) if skips else None
            x = up(x, level_skips, ctx, ckpt, size)
            if cfg.temporal_modules:
                x = run_block(model.up_temporal_blocks[i], x, ctx, ckpt)
        if full:
            self.computed = [c + 1 for c in self.computed]
        self.calls += 1
        return model.head(x, ctx)

    def record(self, video: int) -> dict:
        """What the sidecar of video ``video`` records (``cache_computed_calls``: full U-Net calls)."""
        return {"cache": self.config.spec(), "cache_computed_calls": self.computed[video],
                "cache_model_calls": self.calls}
