"""Dataset kinds over files on disk, and :func:`build_dataset` (the one entry point the trainer uses).

Every item is a dict: ``video`` float ``(3, F, H, W)`` in [-1, 1], ``index`` int, plus ``y`` (class id; kinds
classes/images-with-classes and synthetic) and/or ``caption`` (captions, synthetic). With ``num_images = K > 0``
(image-video joint training) K still images are appended after the frames: ``video (3, F + K, H, W)``, with
``y_images (K,)`` and/or ``image_captions`` (list of K) when the images have labels/captions.

Bad inputs are expected: every file is checked up front (``scan``) and the unusable ones are counted per
reason; a clip that still fails during training is replaced by the next one (deterministically) and counted.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from latte.config import ConfigError
from latte.data.config import DataConfig
from latte.data.latents import CachedLatentDataset
from latte.data.skips import EmptyDatasetError, SkipCounter, logger
from latte.data.transforms import VideoTransform, frame_indices
from latte.data.video_io import (
    IMAGE_EXTENSIONS,
    VideoReadError,
    list_frame_images,
    natural_sort_key,
    probe_video,
    read_image,
    read_image_frames,
    read_video_frames,
)

__all__ = [
    "ClipRecord",
    "ClipDataset",
    "ImageDataset",
    "WithImages",
    "read_manifest",
    "build_dataset",
    "scan_clips",
]

PATH_COLUMNS = ("path", "video", "video_path", "video_file_name", "file", "file_name", "image", "image_path")
CAPTION_COLUMNS = ("caption", "prompt", "text", "title")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "": "train"}


@dataclass
class ClipRecord:
    """One clip: a video file, or a folder of frame images (``frames`` lists them in order)."""

    path: str
    y: Optional[int] = None
    caption: Optional[str] = None
    frames: Optional[list[str]] = None
    num_frames: Optional[int] = None  # from the scan; corrected if decoding finds fewer

    @property
    def label(self) -> str:
        return self.path


def _rng_from_torch() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG, which DataLoader seeds per worker and epoch."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


# ----------------------------------------------------------------------------------------------- listing

def _walk_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort(key=natural_sort_key)
        for name in sorted(filenames, key=natural_sort_key):
            if name.lower().endswith(extensions) and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return found


def _require_dir(path: Path, kind: str) -> None:
    if not path.is_dir():
        raise EmptyDatasetError(f"data.path: {path} is not a folder (needed by kind '{kind}')")


def list_video_files(root: Path, extensions: list[str]) -> list[ClipRecord]:
    return [ClipRecord(str(p)) for p in _walk_files(root, tuple(e.lower() for e in extensions))]


def list_frame_folders(root: Path) -> list[ClipRecord]:
    """Every folder under ``root`` that directly holds image files is one clip."""
    records = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort(key=natural_sort_key)
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            records.append(ClipRecord(dirpath))
    return sorted(records, key=lambda r: natural_sort_key(r.path))


def class_folders(root: Path, class_names: list[str]) -> list[str]:
    """The class order: ``class_names`` if given (all must exist), else the sorted sub-folder names."""
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        return present
    missing = [c for c in class_names if c not in present]
    if missing:
        raise EmptyDatasetError(f"data.class_names: no folder for {missing} under {root}")
    return list(class_names)


def list_class_videos(root: Path, class_names: list[str], extensions: list[str]) -> tuple[list[ClipRecord], list[str]]:
    names = class_folders(root, class_names)
    records = [replace(r, y=y) for y, name in enumerate(names) for r in list_video_files(root / name, extensions)]
    return records, names


# ----------------------------------------------------------------------------------------------- manifest

def _normalise_split(value: str) -> str:
    value = value.strip().lower()
    return _SPLIT_ALIASES.get(value, value)


def _find_column(columns: list[str], candidates: tuple[str, ...], manifest: Path, what: str) -> str:
    lowered = {c.strip().lower(): c for c in columns if c}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    raise EmptyDatasetError(f"{manifest}: no {what} column; expected one of {', '.join(candidates)}, "
                            f"found {', '.join(map(str, columns)) or 'nothing'}")


def _manifest_rows(manifest: Path, counter: SkipCounter) -> tuple[list[dict], list[str]]:
    """Raw rows (str -> str) of a CSV or JSONL file; rows with undecodable bytes are counted and dropped."""
    raw = manifest.read_bytes()
    rows: list[dict] = []
    if manifest.suffix.lower() in (".jsonl", ".json"):
        columns: set[str] = set()
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{manifest}:{n}"
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                counter.add(where, "caption_not_utf8")
                continue
            except json.JSONDecodeError as e:
                counter.add(where, "bad_manifest_row", f"invalid JSON: {e.msg}")
                continue
            if not isinstance(row, dict):
                counter.add(where, "bad_manifest_row", "not a JSON object")
                continue
            row = {str(k): "" if v is None else str(v) for k, v in row.items()}
            row["_where"] = where
            columns.update(row)
            rows.append(row)
        return rows, sorted(columns - {"_where"})
    text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",|\t;", key=first_line.count) if first_line else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    try:
        for n, row in enumerate(reader, start=2):
            where = f"{manifest}:{n}"
            if None in row or any(v is None for v in row.values()):
                counter.add(where, "bad_manifest_row", f"expected {len(columns)} fields")
                continue
            values = {k: v.strip() for k, v in row.items()}
            if any(_has_surrogates(v) for v in values.values()):
                counter.add(where, "caption_not_utf8")
                continue
            values["_where"] = where
            rows.append(values)
    except csv.Error as e:
        counter.add(f"{manifest}:{reader.line_num}", "bad_manifest_row", f"CSV error: {e}; rest of file ignored")
    return rows, columns


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def resolve_inside(root: Path, relative: str) -> Optional[Path]:
    """``root / relative`` resolved, or None when it leaves ``root`` (``..``, absolute paths, symlinks)."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root) else None


def read_manifest(manifest: str | Path, split: str, counter: SkipCounter) -> list[ClipRecord]:
    """Rows of a captions manifest (CSV with a header, or JSONL) for ``split``.

    Columns (case-insensitive; first match wins): path = one of ``PATH_COLUMNS``, caption = one of
    ``CAPTION_COLUMNS``, optional ``split`` (train/val/test..., 'validation' = 'val', empty = 'train') and
    optional ``label`` (integer class id). Without a split column every row belongs to every split.
    Paths are relative to the manifest's folder; a path that leaves it is rejected (``path_escapes_root``).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise EmptyDatasetError(f"data.path: manifest {manifest} does not exist")
    rows, columns = _manifest_rows(manifest, counter)
    path_col = _find_column(columns, PATH_COLUMNS, manifest, "path")
    caption_col = _find_column(columns, CAPTION_COLUMNS, manifest, "caption")
    lowered = {c.lower(): c for c in columns}
    split_col, label_col = lowered.get("split"), lowered.get("label")
    root = manifest.parent
    records, splits_present = [], set()
    for row in rows:
        where = row["_where"]
        if split_col:
            splits_present.add(_normalise_split(row.get(split_col, "")))
            if _normalise_split(row.get(split_col, "")) != _normalise_split(split):
                continue
        rel, caption = row.get(path_col, ""), row.get(caption_col, "")
        if not rel or not caption:
            counter.add(where, "bad_manifest_row", "empty path or caption")
            continue
        path = resolve_inside(root, rel)
        if path is None:
            counter.add(where, "path_escapes_root", rel)
            continue
        label = None
        if label_col and row.get(label_col, "") != "":
            try:
                label = int(row[label_col])
            except ValueError:
                counter.add(where, "bad_manifest_row", f"label {row[label_col]!r} is not an integer")
                continue
        records.append(ClipRecord(str(path), y=label, caption=caption))
    if split_col and _normalise_split(split) not in splits_present:
        raise EmptyDatasetError(f"{manifest}: no rows of split '{split}' (splits in its '{split_col}' column: "
                                f"{', '.join(sorted(splits_present)) or 'none'})")
    return records


# ----------------------------------------------------------------------------------------------- scanning

def _clip_length(record: ClipRecord) -> int:
    if record.frames is not None:
        return len(record.frames)
    return probe_video(record.path).num_frames


def scan_clips(records: list[ClipRecord], cfg: DataConfig, counter: SkipCounter,
               progress: bool = True) -> list[ClipRecord]:
    """Keep the usable clips; count the others by reason. Fills ``num_frames`` (and ``frames`` for folders)."""
    window = cfg.num_frames * cfg.frame_interval
    usable = []
    for record in tqdm(records, desc=f"scanning {counter.name}", unit="file", disable=not progress or len(records) < 200,
                       dynamic_ncols=True):
        path = Path(record.path)
        try:
            if path.is_dir():
                record.frames = [str(p) for p in list_frame_images(path)]
                if not record.frames:
                    raise VideoReadError(path, "no_frames")
            elif not path.exists():
                raise VideoReadError(path, "missing")
            elif record.frames is None and path.suffix.lower() in IMAGE_EXTENSIONS:
                raise VideoReadError(path, "not_a_video")
            record.num_frames = _clip_length(record)
            if record.num_frames < cfg.min_frames:
                raise VideoReadError(path, "too_few_frames", f"{record.num_frames} < data.min_frames {cfg.min_frames}")
            if cfg.short_clips == "skip" and record.num_frames < window:
                raise VideoReadError(path, "too_short", f"{record.num_frames} < {window}")
            if cfg.scan == "decode":  # the centred window, corrected to the true length as training would
                read_window(record, cfg, None)
        except VideoReadError as e:
            counter.add(record.path, e.reason, e.detail)
            continue
        usable.append(record)
    return usable


def _read_clip_frames(record: ClipRecord, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` of a clip. A failure is reported against the clip (``record.path``; for a frame folder
    the bad frame is in the detail), so the clip is skipped once and never re-read."""
    if record.frames is None:
        return read_video_frames(record.path, indices)
    try:
        return read_image_frames(record.frames, indices)
    except VideoReadError as e:
        if e.path == record.path:
            raise
        raise VideoReadError(record.path, e.reason, f"{Path(e.path).name}" + (f": {e.detail}" if e.detail else "")) \
            from None


def read_window(record: ClipRecord, cfg: DataConfig, rng: Optional[np.random.Generator]) -> np.ndarray:
    """The frames of one temporal window (``rng``: random, None: centred) of a clip, uint8 ``(F, H, W, 3)``.
    A video whose header overestimated its length (VFR, truncated tail) is re-read once with the true length,
    which is then kept in ``record.num_frames``; raises :class:`VideoReadError` when the clip is unusable."""
    for _ in range(2):
        indices = frame_indices(record.num_frames, cfg.num_frames, cfg.frame_interval, rng, cfg.frame_sampling)
        try:
            return _read_clip_frames(record, indices)
        except VideoReadError as e:
            if e.reason != "too_few_frames" or not e.detail.isdigit() or int(e.detail) >= record.num_frames:
                raise
            record.num_frames = int(e.detail)  # header overestimated the length; retry once
            if record.num_frames < cfg.min_frames:
                raise VideoReadError(record.path, "too_few_frames", e.detail) from None
            if cfg.short_clips == "skip" and record.num_frames < cfg.num_frames * cfg.frame_interval:
                raise VideoReadError(record.path, "too_short", e.detail) from None
    raise VideoReadError(record.path, "decode_error", "frame count keeps changing")


# ----------------------------------------------------------------------------------------------- datasets

class ClipDataset(torch.utils.data.Dataset):
    """Clips from video files or frame folders (kinds videos, frame_folders, classes, captions).

    ``split == "train"``: random temporal window and (if ``cfg.hflip``) random flip per access; otherwise the
    centered window, no flip. ``class_names`` is set for class datasets (index = class id).
    """

    def __init__(self, records: list[ClipRecord], cfg: DataConfig, split: str, counter: SkipCounter,
                 class_names: Optional[list[str]] = None):
        self.records, self.cfg, self.split, self.counter = records, cfg, split, counter
        self.class_names = class_names
        self.transform = VideoTransform(cfg.image_size, cfg.crop, cfg.antialias)
        self.training = split == "train"

    def __len__(self) -> int:
        return len(self.records)

    def _meta(self, record: ClipRecord, index: int) -> dict:
        item: dict = {"index": index}
        if record.y is not None:
            item["y"] = record.y
        if record.caption is not None:
            item["caption"] = record.caption
        return item

    def load(self, index: int, rng: Optional[np.random.Generator] = None, flip: bool = False) -> dict:
        """Item ``index`` with an explicit window (``rng``: random, None: centered) and flip; may raise
        :class:`VideoReadError`. A clip found shorter than its header said is re-read with its true length."""
        record = self.records[index]
        if record.path in self.counter.reasons:
            raise VideoReadError(record.path, self.counter.reasons[record.path])
        frames = read_window(record, self.cfg, rng)
        return {"video": self.transform(frames, flip=flip), **self._meta(record, index)}

    def load_still(self, index: int, rng: np.random.Generator) -> dict:
        """One random frame of clip ``index`` as ``image (3, 1, H, W)`` (+ ``y``/``caption``); joint training."""
        record = self.records[index]
        if record.path in self.counter.reasons:
            raise VideoReadError(record.path, self.counter.reasons[record.path])
        t = int(rng.integers(record.num_frames))
        frames = _read_clip_frames(record, np.array([t]))
        return {"image": self.transform(frames), **self._meta(record, index)}

    def __getitem__(self, index: int) -> dict:
        return load_with_replacement(self, index, self._load_for_access)

    def _load_for_access(self, index: int) -> dict:
        if not self.training:
            return self.load(index)
        rng = _rng_from_torch()
        flip = bool(self.cfg.hflip and rng.random() < 0.5)
        return self.load(index, rng=rng, flip=flip)


def load_with_replacement(dataset, index: int, load: Callable[[int], dict]) -> dict:
    """``load(index)``; on a :class:`VideoReadError` count it and try ``index + 1``, ``index + 2``, ... (at most
    ``cfg.max_replacements`` times). The returned item keeps the replacement's own ``index``."""
    n = len(dataset)
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} items")
    attempts = dataset.cfg.max_replacements + 1
    for k in range(attempts):
        j = (index + k) % n
        try:
            return load(j)
        except VideoReadError as e:
            dataset.counter.add(e.path, e.reason, e.detail)
    raise EmptyDatasetError(f"{dataset.counter.name}: {attempts} consecutive items from index {index} failed to "
                            f"load ({dataset.counter.summary(n - dataset.counter.total)})")


class ImageDataset(torch.utils.data.Dataset):
    """Still images as one-frame clips: item ``video (3, 1, H, W)`` (+ ``y`` with class sub-folders, or
    ``caption`` from a manifest). Also the image pool of :class:`WithImages`."""

    def __init__(self, records: list[ClipRecord], cfg: DataConfig, counter: SkipCounter,
                 class_names: Optional[list[str]] = None):
        self.records, self.cfg, self.counter, self.class_names = records, cfg, counter, class_names
        self.transform = VideoTransform(cfg.image_size, cfg.crop, cfg.antialias)

    def __len__(self) -> int:
        return len(self.records)

    def load_still(self, index: int, rng: Optional[np.random.Generator] = None) -> dict:
        record = self.records[index]
        if record.path in self.counter.reasons:
            raise VideoReadError(record.path, self.counter.reasons[record.path])
        image = self.transform(read_image(record.path)[None])
        item: dict = {"image": image, "index": index}
        if record.y is not None:
            item["y"] = record.y
        if record.caption is not None:
            item["caption"] = record.caption
        return item

    def __getitem__(self, index: int) -> dict:
        def load(j: int) -> dict:
            item = self.load_still(j)
            item["video"] = item.pop("image")
            return item

        return load_with_replacement(self, index, load)


class WithImages(torch.utils.data.Dataset):
    """Image-video joint training: appends ``num_images`` stills from ``pool`` to every clip of ``videos``.

    Item: ``video (3, F + K, H, W)``; ``y_images`` (K,) int64 when the stills have classes; ``image_captions``
    (list of K str) when they have captions. Stills are drawn at random per access (seeded per item in eval).
    """

    def __init__(self, videos, pool, num_images: int):
        if num_images < 1:
            raise ValueError("WithImages needs num_images >= 1")
        if len(pool) == 0:
            raise EmptyDatasetError("image pool for joint training is empty")
        self.videos, self.pool, self.num_images = videos, pool, num_images
        self.class_names = getattr(videos, "class_names", None)

    def __len__(self) -> int:
        return len(self.videos)

    def _still(self, rng: np.random.Generator) -> dict:
        tries = getattr(getattr(self.pool, "cfg", None), "max_replacements", 20) + 1
        for _ in range(tries):
            j = int(rng.integers(len(self.pool)))
            try:
                return self.pool.load_still(j, rng)
            except VideoReadError as e:
                self.pool.counter.add(e.path, e.reason, e.detail)
        raise EmptyDatasetError(f"image pool: {tries} random stills in a row failed to load")

    def __getitem__(self, index: int) -> dict:
        item = dict(self.videos[index])
        training = getattr(self.videos, "training", getattr(self.videos, "split", "train") == "train")
        rng = _rng_from_torch() if training else np.random.default_rng([index])
        stills = [self._still(rng) for _ in range(self.num_images)]
        item["video"] = torch.cat([item["video"]] + [s["image"] for s in stills], dim=1)
        if all("y" in s for s in stills):
            item["y_images"] = torch.tensor([s["y"] for s in stills], dtype=torch.long)
        if all("caption" in s for s in stills):
            item["image_captions"] = [s["caption"] for s in stills]
        return item


# ----------------------------------------------------------------------------------------------- building

def _image_records(path: Path, split: str, counter: SkipCounter, class_names: list[str]) -> tuple[list[ClipRecord], Optional[list[str]]]:
    """Records of still images: a manifest (captions), class sub-folders (labels) or a plain folder."""
    if path.is_file():
        records = read_manifest(path, split, counter)
        return [r for r in records if _usable_image(r, counter)], None
    _require_dir(path, "images")
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    loose = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if subdirs and not loose:
        names = class_folders(path, class_names)
        records = [ClipRecord(str(p), y=y) for y, name in enumerate(names)
                   for p in _walk_files(path / name, IMAGE_EXTENSIONS)]
    else:
        names = None
        records = [ClipRecord(str(p)) for p in _walk_files(path, IMAGE_EXTENSIONS)]
    return [r for r in records if _usable_image(r, counter)], names


def _usable_image(record: ClipRecord, counter: SkipCounter) -> bool:
    from PIL import Image

    path = Path(record.path)
    try:
        if not path.is_file():
            raise VideoReadError(path, "missing")
        if path.stat().st_size == 0:
            raise VideoReadError(path, "empty_file")
        with Image.open(path) as img:
            img.verify()
        return True
    except VideoReadError as e:
        counter.add(record.path, e.reason)
    except Exception as e:
        counter.add(record.path, "unreadable", type(e).__name__)
    return False


def _finish(counter: SkipCounter, usable: int, where: str) -> None:
    if usable == 0:
        raise counter.empty_error(where)
    (logger.warning if counter.total else logger.info)(counter.summary(usable))


def build_dataset(cfg, split: str = "train", num_images: Optional[int] = None, use_cache: Optional[bool] = None,
                  progress: bool = True):
    """The dataset selected by ``cfg.kind`` for ``split`` (train: random windows and flips; other splits:
    deterministic).

    ``cfg``: a :class:`DataConfig`, or a run config holding one as ``cfg.data``; then ``train.num_images`` and
    ``train.use_cache`` supply the defaults of ``num_images`` / ``use_cache`` and ``cfg.autoencoder`` is checked
    against the cache. ``num_images > 0`` wraps the clips for image-video joint training (:class:`WithImages`);
    ``use_cache`` reads latents from ``data.cache_dir`` (:class:`latte.data.latents.CachedLatentDataset`).
    Raises :class:`EmptyDatasetError` (with per-reason counts) when nothing is usable.
    """
    data = cfg.data if hasattr(cfg, "data") else cfg
    train = getattr(cfg, "train", None)
    num_images = getattr(train, "num_images", 0) if num_images is None else num_images
    use_cache = getattr(train, "use_cache", False) if use_cache is None else use_cache
    if use_cache:
        if not data.cache_dir:
            raise ConfigError("data.cache_dir: required when training from the latent cache (train.use_cache)")
        if num_images:
            raise ConfigError("train.num_images: image-video joint training reads videos; it cannot use the latent "
                              "cache (set train.use_cache: false)")
        return CachedLatentDataset(data.cache_dir, split, expected_data=data,
                                   expected_autoencoder=getattr(cfg, "autoencoder", None))
    cfg = data
    counter = SkipCounter(f"data ({cfg.kind}: {cfg.path or cfg.synthetic.pattern}, split {split})")
    root = Path(cfg.path).expanduser() if cfg.path else None
    class_names = None
    if cfg.kind == "synthetic":
        from latte.data.synthetic import SyntheticDataset

        syn = cfg.synthetic
        count = syn.heldout_videos if split == "heldout" else syn.num_videos
        if syn.frame_rate > 1 or syn.base_frames:
            base = syn.base_frames or cfg.num_frames
            if syn.frame_rate * (base - 1) + 1 < cfg.num_frames:
                raise ConfigError(f"data.num_frames ({cfg.num_frames}) is more than a {base}-frame clip has at "
                                  f"{syn.frame_rate}x the frame rate (data.synthetic.base_frames / frame_rate)")
            dataset = SyntheticDataset(syn.spec(), count, base, cfg.image_size, seed=syn.seed, split=split,
                                       frame_rate=syn.frame_rate, window=cfg.num_frames)
        else:
            dataset = SyntheticDataset(syn.spec(), count, cfg.num_frames, cfg.image_size, seed=syn.seed,
                                       split=split)
        if len(dataset) == 0:
            raise EmptyDatasetError(f"synthetic split {split!r} has 0 videos (data.synthetic.heldout_videos)")
    elif cfg.kind == "images":
        records, class_names = _image_records(root, split, counter, cfg.class_names)
        _finish(counter, len(records), str(root))
        dataset = ImageDataset(records, cfg, counter, class_names)
    else:
        if cfg.kind == "captions":
            records = read_manifest(root, split, counter)
        else:
            _require_dir(root, cfg.kind)
            if cfg.kind == "videos":
                records = list_video_files(root, cfg.extensions)
            elif cfg.kind == "frame_folders":
                records = list_frame_folders(root)
            else:  # classes
                records, class_names = list_class_videos(root, cfg.class_names, cfg.extensions)
        records = scan_clips(records, cfg, counter, progress=progress)
        _finish(counter, len(records), str(root))
        dataset = ClipDataset(records, cfg, split, counter, class_names)
    if num_images > 0:
        dataset = WithImages(dataset, build_image_pool(cfg, dataset, split), num_images)
    return dataset


def build_image_pool(cfg: DataConfig, videos, split: str):
    """Stills for joint training: ``cfg.image_path`` (folder/class folders/manifest) or the clips themselves."""
    if not cfg.image_path:
        return videos
    counter = SkipCounter(f"images ({cfg.image_path})")
    records, names = _image_records(Path(cfg.image_path).expanduser(), split, counter, [])
    _finish(counter, len(records), cfg.image_path)
    return ImageDataset(records, cfg, counter, names)
