"""Procedural video data that needs no download: moving coloured shapes and moving digits.

Every clip is a pure function of ``(attributes, seed)``: :func:`render_clip` draws it, :func:`sample_attributes`
picks the attributes of item ``index`` of a dataset seed. One object moves in a straight line for the whole
clip, so the captioned direction is the direction of its centroid; it is large (``object_scale`` of the frame)
and saturated so it stays recognisable at 32 x 32 after a VAE.

Vocabulary (``VOCAB``)::

    shape     circle | square | triangle | ring | cross          (pattern "shapes")
    digit     0 ... 9                                            (pattern "digits", 5x7 bitmap font below)
    color     red | green | blue | yellow | magenta | cyan | white
    direction left | right | up | down
    speed     slow | fast   (travel of 35% / 70% of the free space over the clip)

Captions: ``"a red circle moving left"`` / ``"a blue digit 3 moving up"`` (speed is not in the caption and not
part of the class; it is in :meth:`SyntheticDataset.attributes`). Class id = index of the (shape|digit, color,
direction) combination in :meth:`SyntheticSpec.combinations`; ``class_names`` are the captions without "a".

Held-out combinations: ``heldout`` is a list of phrases such as ``"red circle"`` or ``"blue square up"``;
a combination is held out when it contains every word of some phrase. Split ``train`` (and ``val``, which uses
fresh random placements) draws only the other combinations, split ``heldout`` only the held-out ones, so a
text-to-video model can be sampled on combinations it never saw.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["VOCAB", "COLORS", "MOTIONS", "SyntheticSpec", "SyntheticDataset", "render_clip", "sample_attributes",
           "caption_for", "partial_caption", "export_synthetic", "shape_coverage"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 245),
    "yellow": (245, 220, 20),
    "magenta": (230, 40, 220),
    "cyan": (20, 220, 230),
    "white": (250, 250, 250),
}
BACKGROUNDS = ("black", "gray", "noise")
MOTIONS = ("bounded", "wrap")
VOCAB: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "ring", "cross"),
    "digit": tuple("0123456789"),
    "color": tuple(COLORS),
    "direction": ("left", "right", "up", "down"),
    "speed": ("slow", "fast"),
}
_DIRECTION_VECTORS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy), y down
_SPEED_TRAVEL = {"slow": 0.35, "fast": 0.7}  # fraction of the free space crossed over the clip

# 5 x 7 bitmap digits ('#' = ink), our own font.
_DIGIT_GLYPHS = {
    "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    "1": ["  #  ", " ##  ", "# #  ", "  #  ", "  #  ", "  #  ", "#####"],
    "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    "3": ["#### ", "    #", "    #", " ### ", "    #", "    #", "#### "],
    "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
    "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    "6": [" ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### "],
    "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
    "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    "9": [" ### ", "#   #", "#   #", " ####", "    #", "    #", " ### "],
}
_GLYPHS = {d: np.array([[c == "#" for c in row] for row in rows]) for d, rows in _DIGIT_GLYPHS.items()}
_SUPERSAMPLE = 4  # sub-pixel samples per axis for anti-aliased edges and smooth sub-pixel motion


def caption_for(attrs: dict) -> str:
    """``"a red circle moving left"`` or ``"a red digit 7 moving left"``."""
    thing = attrs["shape"] if "shape" in attrs else f"digit {attrs['digit']}"
    return f"a {attrs['color']} {thing} moving {attrs['direction']}"


def partial_caption(attrs: dict, keep: str) -> str:
    """The caption with one attribute word left out: ``keep='object'`` → ``"a circle moving left"``,
    ``keep='color'`` → ``"a red shape moving left"`` (``"a red digit moving left"``)."""
    if keep == "object":
        thing = attrs["shape"] if "shape" in attrs else f"digit {attrs['digit']}"
        return f"a {thing} moving {attrs['direction']}"
    if keep == "color":
        return f"a {attrs['color']} {'shape' if 'shape' in attrs else 'digit'} moving {attrs['direction']}"
    raise ValueError(f"partial_caption keep: 'object' or 'color', got {keep!r}")


def shape_coverage(kind: str, value: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean ink mask at sample points ``(xs, ys)`` for an object of half-size ``r`` centred at ``(cx, cy)``."""
    u, v = (xs - cx) / r, (ys - cy) / r  # object coordinates in [-1, 1]
    if kind == "digit":
        glyph = _GLYPHS[value]
        gh, gw = glyph.shape  # 7 x 5, drawn in a (5/7 r) x r box
        col = np.floor((u * gh / gw + 1) / 2 * gw).astype(int)
        row = np.floor((v + 1) / 2 * gh).astype(int)
        inside = (col >= 0) & (col < gw) & (row >= 0) & (row < gh)
        out = np.zeros(u.shape, dtype=bool)
        out[inside] = glyph[row[inside], col[inside]]
        return out
    if value == "circle":
        return u * u + v * v <= 1.0
    if value == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if value == "triangle":  # apex up, base at v = 0.8
        return (v <= 0.8) & (v >= -0.95 + 2 * 0.875 * np.abs(u))
    if value == "ring":
        d = u * u + v * v
        return (d <= 1.0) & (d >= 0.36)
    if value == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    raise ValueError(f"unknown shape {value!r}; known: {', '.join(VOCAB['shape'])}")


def _add_coverage(alpha: np.ndarray, kind: str, value: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float,
                  r: float, upscale: int) -> None:
    """Add to ``alpha`` (out_h, out_w) the ink coverage of the object centred at ``(cx, cy)``: the mean of
    :func:`shape_coverage` over each output pixel's sub-samples ``(xs, ys)``, evaluated only on the pixels of the
    object's box (every shape lies within ``r`` of its centre)."""
    out_h, out_w = alpha.shape
    s = xs.shape[1] // out_w
    x0, x1 = max(0, int(np.floor((cx - r) * upscale))), min(out_w, int(np.ceil((cx + r) * upscale)) + 1)
    y0, y1 = max(0, int(np.floor((cy - r) * upscale))), min(out_h, int(np.ceil((cy + r) * upscale)) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    window = np.s_[y0 * s:y1 * s, x0 * s:x1 * s]
    ink = shape_coverage(kind, value, xs[window], ys[window], cx, cy, r).astype(np.float32)
    alpha[y0:y1, x0:x1] += ink.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))


def render_clip(attrs: dict, num_frames: int = 16, size: Union[int, Sequence[int]] = 32, seed: int = 0,
                background: str = "black", object_scale: float = 0.45, frame_rate: int = 1,
                upscale: int = 1, frames: Optional[Sequence[int]] = None, motion: str = "bounded") -> np.ndarray:
    """Draw one clip: uint8 ``(frame_rate·(num_frames−1)+1, size·upscale, size·upscale, 3)`` (only the output
    frames listed in ``frames``, in that order, when given); ``size`` may be ``(height, width)`` for non-square
    frames.

    ``attrs`` has ``color``, ``direction``, ``speed`` and either ``shape`` or ``digit``. ``seed`` fixes the
    start position (and the noise background). ``object_scale``: object width as a fraction of the frame's
    shorter side; the object crosses ``speed`` of the free room along its direction of motion.

    The same clip at other frame rates and resolutions (ground truth for a cascade's stages):

    - ``frame_rate`` k: the same motion sampled k times as often; frame ``k·j`` of the result is exactly frame j
      of the ``frame_rate=1`` clip (the interpolation stage's target for ``num_frames`` base frames).
    - ``upscale`` s: the same scene on an s times finer pixel grid (object positions and sizes are those of the
      ``size`` clip; the noise background is the ``size`` one with every pixel repeated s×s), so an s×s area
      average of the result is the ``size`` clip up to the rounding of the edge pixels (super-resolution target).

    ``motion``: ``bounded`` (the path stays inside the frame) or ``wrap`` (the frame is a torus along the
    direction of motion: the object leaves one edge and re-enters at the opposite one, drawn on both sides while it
    crosses, with the same speed; the motion goes on past the clip, so ``frames`` may list indices beyond it —
    ground truth for videos longer than the clips a model was trained on).
    """
    if ("shape" in attrs) == ("digit" in attrs):
        raise ValueError(f"attributes need exactly one of 'shape' or 'digit', got {attrs}")
    for key in ("color", "direction", "speed"):
        if attrs.get(key) not in VOCAB[key]:
            raise ValueError(f"attribute {key}={attrs.get(key)!r} is not one of {', '.join(VOCAB[key])}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    if frame_rate < 1 or upscale < 1:
        raise ValueError(f"frame_rate and upscale must be integers >= 1, got {frame_rate} and {upscale}")
    rng = np.random.default_rng(seed)
    kind, value = ("shape", attrs["shape"]) if "shape" in attrs else ("digit", str(attrs["digit"]))
    height, width = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    r = object_scale * min(height, width) / 2
    free_x, free_y = width - 2 * r, height - 2 * r  # room for the centre along each axis
    dx, dy = _DIRECTION_VECTORS[attrs["direction"]]
    free_along, free_across = (free_x, free_y) if dx else (free_y, free_x)
    travel = _SPEED_TRAVEL[attrs["speed"]] * free_along
    period = (width if dx else height) if motion == "wrap" else None  # wrap: the centre's period along the motion
    if period is None:  # start so the whole path stays inside the frame; the perpendicular coordinate is free
        along = rng.uniform(0, free_along - travel)
        across = rng.uniform(0, free_across)
        if dx:
            x0, y0 = r + (along if dx > 0 else free_along - along), r + across
        else:
            x0, y0 = r + across, r + (along if dy > 0 else free_along - along)
    else:  # the centre anywhere on the torus: clips that start straddling an edge are as likely as any other
        along, across = rng.uniform(0, period), rng.uniform(0, free_across)
        x0, y0 = (along, r + across) if dx else (r + across, along)

    out_h, out_w = height * upscale, width * upscale
    if background == "black":
        canvas = np.zeros((out_h, out_w, 3), dtype=np.float32)
    elif background == "gray":
        canvas = np.full((out_h, out_w, 3), 96.0, dtype=np.float32)
    else:  # static low-amplitude noise, fixed by the seed
        canvas = rng.uniform(0, 48, size=(height, width, 1)).astype(np.float32).repeat(3, axis=2)
        canvas = canvas.repeat(upscale, axis=0).repeat(upscale, axis=1)

    s = _SUPERSAMPLE
    # sample points in units of the size-grid pixels
    xs, ys = np.meshgrid((np.arange(out_w * s) + 0.5) / (s * upscale), (np.arange(out_h * s) + 0.5) / (s * upscale))
    color = np.array(COLORS[attrs["color"]], dtype=np.float32)
    num_out = frame_rate * (num_frames - 1) + 1 if num_frames > 0 else 0
    times = list(range(num_out)) if frames is None else [int(t) for t in frames]
    if any(t < 0 or (t >= num_out and motion == "bounded") for t in times):
        raise ValueError(f"frames {times}: a clip of {num_out} frames has indices 0..{num_out - 1} (motion "
                         f"'wrap' continues past the clip)")
    out = np.empty((len(times), out_h, out_w, 3), dtype=np.uint8)
    for i, t in enumerate(times):
        progress = t / (frame_rate * max(1, num_frames - 1))
        cx, cy = x0 + dx * travel * progress, y0 + dy * travel * progress
        centres = [(cx, cy)]
        if period is not None:  # the copies one period before and after draw the part that has crossed an edge
            cx, cy = (cx % period, cy) if dx else (cx, cy % period)
            centres = [(cx + k * period * abs(dx), cy + k * period * abs(dy)) for k in (-1, 0, 1)]
        alpha = np.zeros((out_h, out_w), dtype=np.float32)
        for ox, oy in centres:  # the copies are disjoint (2r < period): their coverages add
            _add_coverage(alpha, kind, value, xs, ys, ox, oy, r, upscale)
        alpha = alpha[..., None]
        out[i] = np.clip(canvas * (1 - alpha) + color * alpha + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic dataset draws from (a plain object; the config section lives in ``latte.data.config``)."""

    pattern: Literal["shapes", "digits"] = "shapes"
    shapes: tuple[str, ...] = VOCAB["shape"][:3]
    digits: tuple[str, ...] = VOCAB["digit"]
    colors: tuple[str, ...] = ("red", "green", "blue", "yellow")
    directions: tuple[str, ...] = VOCAB["direction"]
    speeds: tuple[str, ...] = VOCAB["speed"]
    heldout: tuple[str, ...] = ()
    background: str = "black"
    object_scale: float = 0.45
    partial_captions: float = 0.0  # share of train-split items captioned without their colour or object word
    motion: str = "bounded"  # bounded | wrap (see render_clip)

    def __post_init__(self):
        for key, values in (("shape", self.shapes), ("digit", self.digits), ("color", self.colors),
                            ("direction", self.directions), ("speed", self.speeds)):
            bad = [v for v in values if v not in VOCAB[key]]
            if bad or not values:
                raise ValueError(f"synthetic {key}s: {bad or 'empty list'} not in the vocabulary "
                                 f"({', '.join(VOCAB[key])})")
        if self.motion not in MOTIONS:
            raise ValueError(f"synthetic motion must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        words = set().union(*VOCAB.values())
        for phrase in self.heldout:
            unknown = [w for w in phrase.split() if w not in words]
            if unknown or not phrase.split():
                raise ValueError(f"synthetic heldout phrase {phrase!r}: unknown words {unknown}; use attribute "
                                 f"values such as 'red circle' or 'blue square up'")

    @property
    def object_key(self) -> str:
        return "shape" if self.pattern == "shapes" else "digit"

    def combinations(self) -> list[dict]:
        """Every (object, color, direction) combination in class-id order."""
        objects = self.shapes if self.pattern == "shapes" else self.digits
        return [{self.object_key: o, "color": c, "direction": d}
                for o, c, d in itertools.product(objects, self.colors, self.directions)]

    def is_heldout(self, combo: dict) -> bool:
        values = set(combo.values())
        return any(set(phrase.split()) <= values for phrase in self.heldout)


def sample_attributes(spec: SyntheticSpec, combos: list[tuple[int, dict]], seed: int, index: int) -> tuple[int, dict, int]:
    """Class id, attributes and render seed of item ``index``: combinations are cycled in a seeded shuffled
    order (balanced classes), speed and placement are drawn per item."""
    order = np.random.default_rng([seed, 0]).permutation(len(combos))
    class_id, combo = combos[order[index % len(combos)]]
    rng = np.random.default_rng([seed, 1, index])
    attrs = dict(combo, speed=spec.speeds[int(rng.integers(len(spec.speeds)))])
    return class_id, attrs, int(rng.integers(0, 2**31 - 1))


class SyntheticDataset(torch.utils.data.Dataset):
    """Moving shapes / digits rendered on the fly; item = ``{video (3, F, S, S) in [-1, 1], y, caption, index}``
    (``(3, F, H, W)`` for ``size = (H, W)``).

    ``split``: ``train`` | ``val`` (other placements of the same combinations) | ``heldout`` (only held-out
    combinations). Deterministic: the same (spec, seed, split, index) always gives the same clip.
    """

    def __init__(self, spec: SyntheticSpec, num_videos: int, num_frames: int, size: Union[int, Sequence[int]],
                 seed: int = 0, split: str = "train", frame_rate: int = 1, window: Optional[int] = None):
        if split not in ("train", "val", "heldout"):
            raise ValueError(f"synthetic split must be train, val or heldout, got {split!r}")
        all_combos = list(enumerate(spec.combinations()))
        want_heldout = split == "heldout"
        self.combos = [(i, c) for i, c in all_combos if spec.is_heldout(c) == want_heldout]
        if not self.combos:
            raise ValueError(f"synthetic split {split!r} has no attribute combinations "
                             f"(heldout phrases: {list(spec.heldout) or 'none'})")
        size = size if isinstance(size, int) else tuple(int(v) for v in size)
        self.spec, self.num_videos, self.num_frames, self.size = spec, num_videos, num_frames, size
        self.frame_rate, self.window = frame_rate, window
        total = frame_rate * (num_frames - 1) + 1
        if frame_rate < 1 or (window is not None and not 1 <= window <= total):
            raise ValueError(f"synthetic: frame_rate {frame_rate} must be >= 1 and window {window} in [1, {total}] "
                             f"(the frames of a {num_frames}-frame clip at {frame_rate}x the frame rate)")
        self.split = split
        self.seed = seed + {"train": 0, "val": 1_000_003, "heldout": 2_000_003}[split]
        self.class_names = [caption_for(c)[2:] for c in spec.combinations()]
        self.training = split == "train"

    def __len__(self) -> int:
        return self.num_videos

    def attributes(self, index: int) -> dict:
        """The attributes of item ``index`` (``shape``/``digit``, ``color``, ``direction``, ``speed``)."""
        return sample_attributes(self.spec, self.combos, self.seed, index)[1]

    def render(self, index: int, frame_rate: int = 1, upscale: int = 1) -> np.ndarray:
        """uint8 ``(F, S, S, 3)`` frames of item ``index``; ``frame_rate``/``upscale`` > 1 give the same clip
        with ``frame_rate·(F−1)+1`` frames of ``S·upscale`` pixels (see :func:`render_clip`)."""
        _, attrs, render_seed = sample_attributes(self.spec, self.combos, self.seed, index)
        return render_clip(attrs, self.num_frames, self.size, render_seed, self.spec.background,
                           self.spec.object_scale, frame_rate=frame_rate, upscale=upscale, motion=self.spec.motion)

    def item_frames(self, index: int) -> np.ndarray:
        """uint8 frames of item ``index``: the clip (``frame_rate`` 1, no ``window``), or ``window`` consecutive
        frames of it rendered at ``frame_rate``× the frame rate, starting at a multiple of ``frame_rate`` (a base
        frame) drawn from the item's seed: the training clips of an interpolation stage whose motion per base frame
        is that of the ``num_frames``-frame clips."""
        if self.frame_rate == 1 and self.window is None:
            return self.render(index)
        total = self.frame_rate * (self.num_frames - 1) + 1
        window = self.window or total
        starts = (total - window) // self.frame_rate + 1
        start = self.frame_rate * int(np.random.default_rng([self.seed, 2, index]).integers(starts))
        _, attrs, render_seed = sample_attributes(self.spec, self.combos, self.seed, index)
        return render_clip(attrs, self.num_frames, self.size, render_seed, self.spec.background,
                           self.spec.object_scale, frame_rate=self.frame_rate, frames=range(start, start + window),
                           motion=self.spec.motion)

    def _item(self, index: int, frames: np.ndarray, key: str) -> dict:
        class_id, attrs, _ = sample_attributes(self.spec, self.combos, self.seed, index)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return {key: video, "y": class_id, "caption": self.caption(index), "index": index}

    def caption(self, index: int) -> str:
        """Item ``index``'s caption: the full one, or in the train split with probability
        ``spec.partial_captions`` one that leaves out the colour or the object word (half each, seeded)."""
        attrs = self.attributes(index)
        if self.split == "train" and self.spec.partial_captions > 0:
            rng = np.random.default_rng([self.seed, 3, index])  # [seed, 2, index] draws the window start
            if rng.random() < self.spec.partial_captions:
                return partial_caption(attrs, "object" if rng.random() < 0.5 else "color")
        return caption_for(attrs)

    def __getitem__(self, index: int) -> dict:
        """``{video (3, F, S, S) in [-1, 1], y, caption, index}``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index, self.item_frames(index), "video")

    def load_still(self, index: int, rng: np.random.Generator) -> dict:
        """A random frame of clip ``index`` as ``image (3, 1, S, S)`` (image-video joint training)."""
        t = int(rng.integers(self.num_frames))
        return self._item(index, self.render(index)[t:t + 1], "image")


def export_synthetic(out_dir, spec: SyntheticSpec, counts: dict[str, int], num_frames: int, size: int,
                     seed: int = 0, fps: int = 8, layout: Literal["flat", "classes"] = "flat",
                     progress: bool = True) -> dict[str, int]:
    """Write synthetic clips as mp4 files plus manifests; returns the number of clips per split.

    ``counts``: clips per split (``train``/``val``/``heldout``). Layout ``flat``: ``OUT/videos/<split>/<i>.mp4``;
    ``classes``: ``OUT/<split>/<class id>_<class name>/<i>.mp4`` (UCF101-style; the zero-padded id keeps the
    sorted folder order equal to the class ids; every class has a folder in every split). Always written: ``OUT/captions.csv`` and ``OUT/captions.jsonl``
    with columns path, caption, split, label and the attributes.
    """
    import csv
    import json
    from pathlib import Path

    from tqdm import tqdm

    from latte.data.video_io import write_mp4

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = sum(counts.values())
    width = max(3, len(str(len(spec.combinations()) - 1)))
    with tqdm(total=total, desc=f"writing {out}", unit="clip", disable=not progress, dynamic_ncols=True) as bar:
        for split, n in counts.items():
            if n <= 0:
                continue
            dataset = SyntheticDataset(spec, n, num_frames, size, seed=seed, split=split)
            if layout == "classes":  # every class folder exists, so sorted folder index == class id
                for class_id, name in enumerate(dataset.class_names):
                    (out / split / f"{class_id:0{width}d}_{name.replace(' ', '_')}").mkdir(parents=True, exist_ok=True)
            for i in range(n):
                class_id, attrs, _ = sample_attributes(spec, dataset.combos, dataset.seed, i)
                if layout == "classes":
                    folder = f"{class_id:0{width}d}_{dataset.class_names[class_id].replace(' ', '_')}"
                    rel = Path(split) / folder / f"{i:06d}.mp4"
                else:
                    rel = Path("videos") / split / f"{i:06d}.mp4"
                write_mp4(out / rel, dataset.render(i), fps=fps, crf=10)
                rows.append({"path": rel.as_posix(), "caption": caption_for(attrs), "split": split,
                             "label": class_id, **attrs})
                bar.update(1)
    columns = ["path", "caption", "split", "label", spec.object_key, "color", "direction", "speed"]
    with open(out / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "captions.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (out / "class_names.json").write_text(json.dumps(SyntheticDataset(spec, 1, 1, 8).class_names, indent=1))
    return {split: n for split, n in counts.items() if n > 0}
