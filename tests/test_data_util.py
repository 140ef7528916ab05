"""Helpers shared by the data tests: tiny videos written with PyAV, and a corpus of broken/odd files."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from latte.data.video_io import write_mp4


def ramp_video(num_frames: int, height: int = 24, width: int = 32, marker: bool = False) -> np.ndarray:
    """uint8 (F, H, W, 3) whose frame t has brightness 8 * t (so decoded frames reveal their index);
    ``marker`` paints the left quarter green (a left-right asymmetry, for flip tests)."""
    values = (np.arange(num_frames) * 8 % 256).astype(np.uint8)
    video = np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).copy()
    if marker:
        video[:, :, : width // 4, 1] = 255
    return video


def frame_ids(frames: np.ndarray) -> list[int]:
    """Inverse of :func:`ramp_video` (robust to codec rounding)."""
    return [int(round(float(f.mean()) / 8)) for f in frames]


def write_video(path: Path, num_frames: int, height: int = 24, width: int = 32, fps: int = 10,
                marker: bool = False) -> Path:
    return write_mp4(path, ramp_video(num_frames, height, width, marker), fps=fps, crf=0)


def write_with_codec(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 10,
                     frame_format: str = "rgb24") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=frame_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_vfr(path: Path, num_frames: int = 30) -> Path:
    """H.264 in mkv with alternating 50 ms / 20 ms frame durations (the header overestimates the count)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for t, image in enumerate(ramp_video(num_frames, 32, 32)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 50 if t % 2 else 20
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_broken_corpus(root: Path) -> dict[str, str | None]:
    """Write odd and broken files under ``root``; returns file name -> expected skip reason (None = usable)
    for data.min_frames 2, short_clips stretch."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    write_video(root / "good.mp4", 40)
    expected["good.mp4"] = None
    (root / "zero.mp4").write_bytes(b"")
    expected["zero.mp4"] = "empty_file"
    full = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(full[: len(full) // 2])  # moov atom (at the end) is lost
    expected["truncated.mp4"] = "unreadable"
    (root / "garbage.mp4").write_bytes(b"not a video at all\n" * 50)
    expected["garbage.mp4"] = "unreadable"
    Image.fromarray(ramp_video(1)[0]).save(root / "image.png")
    (root / "image.png").rename(root / "wrong_ext.mp4")  # a still image opens as a one-frame video
    expected["wrong_ext.mp4"] = "too_few_frames"
    write_audio_only(root / "audio_only.mp4")
    expected["audio_only.mp4"] = "no_video_stream"
    write_video(root / "one_frame.mp4", 1)
    expected["one_frame.mp4"] = "too_few_frames"
    write_video(root / "short.mp4", 5)
    expected["short.mp4"] = None  # stretched (frames repeat), as in the official video datasets
    write_with_codec(root / "odd.avi", ramp_video(12, 23, 37), "mjpeg", "yuvj444p")
    expected["odd.avi"] = None
    gray = ramp_video(12, 24, 32)[..., 0]
    write_with_codec(root / "gray.mkv", gray, "ffv1", "gray", frame_format="gray")
    expected["gray.mkv"] = None
    write_vfr(root / "vfr.mkv")
    expected["vfr.mkv"] = None
    (root / "notes.txt").write_text("not a video, ignored by extension")
    return expected
