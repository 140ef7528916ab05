"""Reading and writing video with PyAV (and Pillow for images/GIF).

Frames travel as uint8 numpy arrays ``(F, H, W, 3)`` RGB. Reading decodes only what is needed: decoding stops
after the last requested frame and, for a late first frame on a constant-frame-rate stream, the container is
first seeked to the key frame before it. Every failure to read a file raises :class:`VideoReadError` carrying a
short machine-readable ``reason`` (used by the datasets' skip counters).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np
from PIL import Image

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VideoReadError",
    "VideoInfo",
    "probe_video",
    "read_video_frames",
    "read_all_frames",
    "natural_sort_key",
    "list_frame_images",
    "read_image",
    "read_image_frames",
    "write_mp4",
    "write_gif",
    "write_png_grid",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Seek only when the first wanted frame is at least this many frames in: below it decoding from the start is
# about as fast as a seek plus decoding from the preceding key frame.
_SEEK_MIN_FRAMES = 48

av.logging.set_level(av.logging.FATAL)  # corrupt files are expected: we count them instead of printing libav noise


class VideoReadError(RuntimeError):
    """A file that cannot be used as a clip. ``reason`` is one of: missing, empty_file, unreadable,
    no_video_stream, decode_error, too_few_frames."""

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a header. ``num_frames`` may be an estimate (``exact=False``)."""

    num_frames: int
    width: int
    height: int
    fps: float
    exact: bool


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoReadError(path, "missing")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty_file")


def _open(path: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except Exception as e:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise VideoReadError(path, "unreadable", type(e).__name__) from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no_video_stream")
    stream = container.streams.video[0]
    # no frame threading (thread_type AUTO): it deadlocks intermittently after a seek; DataLoader workers
    # provide the parallelism instead
    return container, stream


def _rate(stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def probe_video(path: str | Path, decode_if_unknown: bool = True) -> VideoInfo:
    """Frame count, size and rate from the header: ``stream.frames``, else duration x rate, else (when
    ``decode_if_unknown``) by decoding."""
    container, stream = _open(path)
    try:
        fps = _rate(stream)
        n, exact = int(stream.frames or 0), bool(stream.frames)
        if n <= 0:
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            if duration and fps:
                n = int(round(duration * fps))
        if n <= 0 and decode_if_unknown:
            n, exact = _count_by_decoding(container, stream, path), True
        return VideoInfo(num_frames=n, width=stream.codec_context.width, height=stream.codec_context.height,
                         fps=fps, exact=exact)
    finally:
        container.close()


def _count_by_decoding(container, stream, path) -> int:
    n = 0
    try:
        for _ in container.decode(stream):
            n += 1
    except Exception as e:
        if n == 0:
            raise VideoReadError(path, "decode_error", type(e).__name__) from None
    return n


def _frame_index(frame, stream, start: float, fps: float) -> int:
    return int(round((float(frame.pts * stream.time_base) - start) * fps))


def read_video_frames(path: str | Path, indices: Sequence[int], seek: bool = True) -> np.ndarray:
    """Decode the frames at ``indices`` (0-based decode order, any order, repeats allowed).

    Returns uint8 ``(len(indices), H, W, 3)``. Raises :class:`VideoReadError` with reason ``too_few_frames``
    (and ``detail`` = the number of frames the file really has) if the file ends before the last index.
    """
    if len(indices) == 0:
        raise ValueError("read_video_frames: no frame indices given")
    wanted = sorted(set(int(i) for i in indices))
    if wanted[0] < 0:
        raise ValueError(f"read_video_frames: negative frame index {wanted[0]}")
    container, stream = _open(path)
    try:
        fps = _rate(stream)
        frames: dict[int, np.ndarray] = {}
        seekable = seek and fps > 0 and stream.time_base is not None and wanted[0] >= _SEEK_MIN_FRAMES
        if seekable and _decode_after_seek(container, stream, wanted, fps, frames):
            pass
        else:
            if seekable:  # the seek landed somewhere unexpected: start over from the first frame
                frames.clear()
                container.seek(0)
            _decode_sequential(container, stream, wanted, frames, path)
    finally:
        container.close()
    return np.stack([frames[int(i)] for i in indices])


def _decode_sequential(container, stream, wanted: list[int], out: dict, path) -> None:
    want, last, n = set(wanted), wanted[-1], 0
    try:
        for frame in container.decode(stream):
            if n in want:
                out[n] = frame.to_ndarray(format="rgb24")
            if n == last:
                return
            n += 1
    except Exception as e:
        if n == 0:
            raise VideoReadError(path, "decode_error", type(e).__name__) from None
        # a truncated tail: report what we have, the caller may retry with the true length
    raise VideoReadError(path, "too_few_frames", str(n))


def _decode_after_seek(container, stream, wanted: list[int], fps: float, out: dict) -> bool:
    """Seek to the key frame before ``wanted[0]`` and decode from there, numbering frames by their timestamp.
    Returns False if the numbering cannot be trusted (caller falls back to sequential decoding)."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    target_pts = int((start + wanted[0] / fps) / stream.time_base)
    try:
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)
        want, last, prev = set(wanted), wanted[-1], None
        for frame in container.decode(stream):
            if frame.pts is None:
                return False
            n = _frame_index(frame, stream, start, fps)
            if prev is None and n > wanted[0]:
                return False  # overshot the first wanted frame
            if prev is not None and n != prev + 1:
                return False  # variable frame rate or dropped frames: timestamps do not give indices
            prev = n
            if n in want:
                out[n] = frame.to_ndarray(format="rgb24")
            if n >= last:
                return len(out) == len(want)
    except Exception:
        return False
    return False


def read_all_frames(path: str | Path) -> np.ndarray:
    """Every decodable frame of a video, uint8 ``(F, H, W, 3)`` (use for short clips only)."""
    container, stream = _open(path)
    frames = []
    try:
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
    except Exception as e:
        if not frames:
            raise VideoReadError(path, "decode_error", type(e).__name__) from None
    finally:
        container.close()
    if not frames:
        raise VideoReadError(path, "too_few_frames", "0")
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------- images

def natural_sort_key(name: str) -> tuple:
    """Sort key putting ``frame_2`` before ``frame_10`` (digit runs compare as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def list_frame_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, naturally sorted by name."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def read_image(path: str | Path) -> np.ndarray:
    """One image as uint8 ``(H, W, 3)`` RGB (grayscale/alpha/palette images are converted)."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except Exception as e:
        raise VideoReadError(path, "unreadable", type(e).__name__) from None


def read_image_frames(paths: Sequence[str | Path], indices: Iterable[int]) -> np.ndarray:
    """Frames ``indices`` of a frame-image sequence, uint8 ``(N, H, W, 3)``; all must share one size."""
    cache: dict[int, np.ndarray] = {}
    frames = []
    for i in indices:
        if i not in cache:
            cache[i] = read_image(paths[i])
        frames.append(cache[i])
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoReadError(paths[0], "mixed_frame_sizes", ", ".join(str(s) for s in sorted(shapes)))
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------- writing

def _as_uint8_video(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype} (convert with latte.data.to_uint8)")
    return frames


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8, crf: int = 18, codec: str = "libx264") -> Path:
    """Write uint8 ``(F, H, W, 3)`` frames as an H.264 yuv420p mp4. Odd sizes are padded by edge replication
    to even sizes (yuv420p needs them). ``crf``: x264 quality (0 lossless luma, 18 visually lossless)."""
    frames = _as_uint8_video(frames)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 8, loop: int = 0) -> Path:
    """Write uint8 ``(F, H, W, 3)`` frames as an animated GIF (Pillow; ``loop=0`` loops forever)."""
    frames = _as_uint8_video(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)),
                   loop=loop, optimize=False)
    return path


def write_png_grid(path: str | Path, videos: np.ndarray, nrow: int | None = None, pad: int = 2) -> Path:
    """One PNG tiling all frames of uint8 ``videos (N, F, H, W, 3)`` (or one video ``(F, H, W, 3)``) row-major,
    ``nrow`` tiles per line; by default one line per video (``nrow = F``)."""
    videos = np.asarray(videos)
    if videos.ndim == 4:
        videos = videos[None]
    if videos.ndim != 5 or videos.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos (N, F, H, W, 3), got {videos.dtype} {videos.shape}")
    n, f, h, w, _ = videos.shape
    tiles = videos.reshape(n * f, h, w, 3)
    cols = f if nrow is None else max(1, nrow)
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
