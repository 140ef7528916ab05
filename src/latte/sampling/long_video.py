"""Training-free long videos: overlapping temporal windows with blended outputs and rescheduled noise (the
FreeNoise idea), for any video denoiser trained on ``size`` frames.

Two pure pieces, used by :class:`latte.sampling.LattePipeline` when ``frames`` exceeds the trained length:

* :func:`reschedule_noise`: the initial noise of frames ``[0, size)`` is drawn as usual; every later chunk of
  ``stride`` frames is a shuffled copy of the chunk ``size`` frames earlier, so every window sees a permutation
  of the same ``size`` noise frames (windows share noise structure, hence content) while no two neighbouring
  frames share their noise. The shuffles come from each video's own generator: deterministic per seed.
* :func:`windowed`: wraps a model function ``(x (B, C, F, h, w), t) -> (B, C_out, F, h, w)`` so that the model
  sees only windows of ``size`` frames starting every ``stride`` frames (the last one ends at the last frame),
  each at temporal positions ``0..size-1`` exactly as in training (the model's absolute temporal embedding and
  its temporal attention never see a frame outside the window). The windows' outputs are fused per frame with
  pyramid weights (highest at a window's centre), so a frame near one window's border takes most of its value
  from the neighbouring window where it is central. Fusing at the model output (every denoising step) rather
  than inside each attention layer is what keeps absolute position embeddings, which Latte adds once to the
  residual stream, consistent; it needs no change to the model and applies as well to any variant and to the
  LaVie U-Net.

With ``frames == size`` there is one window and both pieces are the identity: sampling is exactly the plain one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

__all__ = ["TemporalWindows", "resolve_windows", "window_starts", "window_weights", "reschedule_noise",
           "windowed"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TemporalWindows:
    """Windows of ``size`` frames every ``stride`` frames (latent frames)."""

    size: int
    stride: int

    def record(self) -> dict:
        """What goes into each video's sidecar."""
        return {"size": self.size, "stride": self.stride, "fusion": "pyramid", "noise": "shuffled-repeat"}


def resolve_windows(frames: int, trained_frames: int, window: Optional[int] = None,
                    stride: Optional[int] = None, multiple: int = 1) -> Optional[TemporalWindows]:
    """The windows for sampling ``frames`` frames from a model trained on ``trained_frames``, or None (plain).

    ``window`` None: windows of the trained length when ``frames`` exceeds it, else none; 0: never (full
    attention over all frames, as before this option existed). ``stride`` None: half the window (rounded down
    to a multiple of ``multiple``, the tubelet size, at least one). ``window >= frames`` is plain sampling.
    """
    if window is None:
        if frames <= trained_frames:
            if stride is not None:
                raise ValueError(f"window_stride {stride} given, but {frames} frames fit the model's trained "
                                 f"length {trained_frames}: pass window too")
            return None
        window = trained_frames
    window = int(window)
    if window == 0:
        return None
    if window < 1:
        raise ValueError(f"window: expected a positive number of frames (0 turns windows off), got {window}")
    if window % multiple:
        raise ValueError(f"window {window} must be a multiple of the model's tubelet size {multiple}")
    if stride is None:
        stride = max(multiple, (window // 2) // multiple * multiple)
    stride = int(stride)
    if not 1 <= stride <= window:
        raise ValueError(f"window_stride: expected 1..window ({window}) frames, got {stride}")
    if stride % multiple:
        raise ValueError(f"window_stride {stride} must be a multiple of the model's tubelet size {multiple}")
    if window >= frames:
        return None
    return TemporalWindows(window, stride)


def window_starts(frames: int, size: int, stride: int) -> list[int]:
    """First frame of every window: ``0, stride, 2·stride, ...`` and a last window ending at the last frame."""
    if frames <= size:
        return [0]
    starts = list(range(0, frames - size + 1, stride))
    if starts[-1] != frames - size:
        starts.append(frames - size)
    return starts


def window_weights(size: int) -> torch.Tensor:
    """Pyramid fusion weights ``(size,)``: ``min(i + 1, size - i)``, e.g. 1 2 3 4 4 3 2 1 (float32)."""
    i = torch.arange(size)
    return torch.minimum(i + 1, size - i).float()


def reschedule_noise(noise: torch.Tensor, windows: TemporalWindows,
                     generators: Sequence[torch.Generator], frames: int) -> torch.Tensor:
    """``noise (B, C, size, h, w)`` (the first window's, one row per generator) → ``(B, C, frames, h, w)``.

    Frames ``[j, j + stride)`` for ``j >= size`` are the frames ``[j - size, j - size + stride)``, shuffled by
    ``generators[b]`` (a fresh permutation per chunk and video); the last chunk may be cut short.
    """
    size, stride = windows.size, windows.stride
    if noise.shape[2] != size:
        raise ValueError(f"expected the first window's noise ({size} frames), got {noise.shape[2]} frames")
    rows = []
    for b, gen in enumerate(generators):
        x = noise[b]
        for j in range(size, frames, stride):
            perm = torch.randperm(stride, generator=gen, device=gen.device).to(x.device)
            chunk = x[:, j - size:j - size + stride][:, perm]
            x = torch.cat([x, chunk[:, :frames - j]], dim=1)
        rows.append(x)
    return torch.stack(rows)


def windowed(model_fn: Union[ModelFn, Sequence[ModelFn]], windows: TemporalWindows) -> ModelFn:
    """``model_fn`` evaluated on each window of ``x (B, C, F, h, w)`` alone, outputs fused per frame.

    ``model_fn`` may be a list of functions, one per window in start order (e.g. each with its own step-cache
    state, since every window is its own input sequence over the denoising steps).
    """

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        starts = window_starts(frames, windows.size, windows.stride)
        fns = list(model_fn) if isinstance(model_fn, (list, tuple)) else [model_fn] * len(starts)
        if len(fns) != len(starts):
            raise ValueError(f"{len(fns)} model functions for {len(starts)} windows of {frames} frames")
        if len(starts) == 1:
            return fns[0](x, t)
        weights = window_weights(windows.size).to(x.device)[None, None, :, None, None]
        total = weight_sum = None
        for fn, s in zip(fns, starts):
            out = fn(x[:, :, s:s + windows.size], t).float() * weights
            if total is None:
                total = out.new_zeros((*out.shape[:2], frames, *out.shape[3:]))
                weight_sum = out.new_zeros((1, 1, frames, 1, 1))
            total[:, :, s:s + windows.size] += out
            weight_sum[:, :, s:s + windows.size] += weights
        return total / weight_sum

    return run
