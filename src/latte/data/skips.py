"""Counting and reporting unusable inputs: one warning per file, one summary per dataset."""
from __future__ import annotations

import logging
from collections import Counter

__all__ = ["SkipCounter", "EmptyDatasetError", "REASONS", "logger"]

logger = logging.getLogger("latte.data")

# reason -> what it means (printed in summaries and docs/data.md)
REASONS = {
    "missing": "file or folder does not exist",
    "empty_file": "zero-byte file",
    "unreadable": "not a readable video/image (corrupt, truncated header, wrong extension)",
    "no_video_stream": "container without a video stream (e.g. audio only)",
    "decode_error": "frames could not be decoded (truncated or corrupt data)",
    "too_few_frames": "fewer frames than data.min_frames",
    "too_short": "fewer than num_frames x frame_interval frames with data.short_clips: skip",
    "mixed_frame_sizes": "frame images of one clip have different sizes",
    "no_frames": "frame folder without image files",
    "bad_manifest_row": "manifest row without a usable path or caption (malformed CSV/JSON)",
    "caption_not_utf8": "manifest row whose bytes are not valid UTF-8",
    "path_escapes_root": "manifest path pointing outside the manifest's folder (rejected)",
    "not_a_video": "manifest path that is neither a video file nor a frame folder",
}


class EmptyDatasetError(RuntimeError):
    """No usable item; the message lists what was skipped and why."""


class SkipCounter:
    """Per-reason counts of skipped inputs. :meth:`add` logs each path once (at WARNING)."""

    def __init__(self, name: str):
        self.name = name
        self.counts: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}  # path -> reason

    def add(self, path: str, reason: str, detail: str = "") -> None:
        if path in self.reasons:
            return
        self.reasons[path] = reason
        self.counts[reason] += 1
        logger.warning("%s: skipping %s: %s%s", self.name, path, reason, f" ({detail})" if detail else "")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, usable: int) -> str:
        if not self.counts:
            return f"{self.name}: {usable} usable items, nothing skipped"
        parts = ", ".join(f"{reason} {n}" for reason, n in self.counts.most_common())
        return f"{self.name}: {usable} usable items; skipped {self.total}: {parts}"

    def empty_error(self, where: str) -> EmptyDatasetError:
        if not self.counts:
            return EmptyDatasetError(f"{self.name}: no usable items in {where}: nothing matching was found")
        details = "; ".join(f"{reason} {n} ({REASONS.get(reason, reason)})" for reason, n in self.counts.most_common())
        return EmptyDatasetError(f"{self.name}: no usable items in {where}: all {self.total} skipped: {details}")
