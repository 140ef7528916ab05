"""Video IO, frame selection (official formula) and spatial transforms."""
import numpy as np
import pytest
import torch

from latte.data.transforms import (
    VideoTransform,
    center_crop_resize,
    frame_indices,
    resize_center_crop,
    temporal_window,
    to_uint8,
)
from latte.data.video_io import (
    VideoReadError,
    list_frame_images,
    probe_video,
    read_all_frames,
    read_video_frames,
    write_gif,
    write_mp4,
    write_png_grid,
)
from helpers import frame_ids, ramp_video, write_video, write_with_codec


class FixedBegin:
    """Stands in for np.random.Generator: records the bounds asked for and returns a chosen begin."""

    def __init__(self, begin):
        self.begin, self.bounds = begin, None

    def integers(self, low, high):
        self.bounds = (low, high)
        return min(self.begin, high - 1)


def official_indices(total, num_frames, frame_interval, begin):
    """spec §4.2: TemporalRandomCrop(num_frames * frame_interval) + np.linspace, with random.randint -> begin."""
    size = num_frames * frame_interval
    rand_end = max(0, total - size - 1)
    begin = min(begin, rand_end)
    end = min(begin + size, total)
    return np.linspace(begin, end - 1, num_frames, dtype=int), rand_end


@pytest.mark.parametrize("total", [1, 5, 47, 48, 49, 50, 100, 301])
@pytest.mark.parametrize("num_frames,frame_interval", [(16, 3), (16, 1), (8, 2)])
def test_frame_indices_equal_official_formula(total, num_frames, frame_interval):
    for begin in (0, 1, 7, 10_000):
        rng = FixedBegin(begin)
        ours = frame_indices(total, num_frames, frame_interval, rng)
        ref, rand_end = official_indices(total, num_frames, frame_interval, begin)
        assert rng.bounds == (0, rand_end + 1)  # randint(0, rand_end) is inclusive
        np.testing.assert_array_equal(ours, ref)
        assert len(ours) == num_frames and ours.min() >= 0 and ours.max() < total


def test_eval_window_is_deterministic_and_centered():
    assert temporal_window(100, 48, None) == (25, 73)
    np.testing.assert_array_equal(frame_indices(100, 16, 3), frame_indices(100, 16, 3))


def test_stride_sampling_matches_frame_folder_slicing():
    # official sky/taichi: frames[idx[0]:idx[-1]+1:frame_interval]
    for begin in (0, 5, 52):
        ours = frame_indices(100, 16, 3, FixedBegin(begin), sampling="stride")
        ref, _ = official_indices(100, 16, 3, begin)
        np.testing.assert_array_equal(ours, np.arange(100)[ref[0]:ref[-1] + 1:3])
    assert len(frame_indices(10, 16, 3, FixedBegin(0), sampling="stride")) == 16  # short clip: stretched


def test_read_selected_frames_sequential_and_seek(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", ramp_video(150), fps=25, crf=0)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.exact) == (150, 32, 24, True)
    wanted = [60, 61, 90, 149, 60]
    seek = read_video_frames(path, wanted, seek=True)
    sequential = read_video_frames(path, wanted, seek=False)
    assert seek.shape == (5, 24, 32, 3) and seek.dtype == np.uint8
    assert np.array_equal(seek, sequential)
    assert frame_ids(seek) == [i * 8 % 256 // 8 for i in wanted]


def test_seek_with_short_gop_matches_full_decode(tmp_path):
    # key frame every 10 frames: the seek path really lands mid-file
    frames = ramp_video(120)
    path = write_with_codec(tmp_path / "gop.mp4", frames, "mpeg4", "yuv420p", fps=25)
    full = read_all_frames(path)
    wanted = [70, 75, 119]
    assert np.array_equal(read_video_frames(path, wanted, seek=True), full[wanted])


def test_reading_past_the_end_reports_true_length(tmp_path):
    path = write_video(tmp_path / "v.mp4", 12)
    with pytest.raises(VideoReadError) as err:
        read_video_frames(path, [0, 20])
    assert err.value.reason == "too_few_frames" and err.value.detail == "12"


def test_frame_images_natural_sort(tmp_path):
    for i in (10, 2, 1, 33):
        (tmp_path / f"frame_{i}.png").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in list_frame_images(tmp_path)] == ["frame_1.png", "frame_2.png", "frame_10.png", "frame_33.png"]


def test_writers_round_trip(tmp_path):
    frames = ramp_video(6, 15, 21)  # odd size: padded to even for yuv420p
    mp4 = write_mp4(tmp_path / "a.mp4", frames, fps=8, crf=0)
    back = read_all_frames(mp4)
    assert back.shape == (6, 16, 22, 3)
    assert frame_ids(back[:, :15, :21]) == frame_ids(frames)
    gif = write_gif(tmp_path / "a.gif", frames)
    assert probe_video(gif, decode_if_unknown=True).num_frames == 6
    from PIL import Image

    grid = write_png_grid(tmp_path / "g.png", np.stack([frames, frames]))
    assert Image.open(grid).size == (6 * (21 + 2) + 2, 2 * (15 + 2) + 2)


def test_spatial_transforms_official_semantics():
    video = torch.rand(2, 3, 30, 40)
    out = resize_center_crop(video, 16)
    assert out.shape == (2, 3, 16, 16)
    # short side 30 -> 16: scale 16/30, width floor(40 * 16/30) = 21, crop offset round(5/2) = 2 (python round)
    resized = torch.nn.functional.interpolate(video, scale_factor=16 / 30, mode="bilinear", align_corners=False)
    assert torch.equal(out, resized[..., :, 2:18])
    out2 = center_crop_resize(video, 16)
    square = video[..., :, 5:35]
    assert torch.equal(out2, torch.nn.functional.interpolate(square, size=(16, 16), mode="bilinear", align_corners=False))


def test_video_transform_range_flip_and_layout():
    frames = np.zeros((4, 20, 20, 3), np.uint8)
    frames[:, :, :10] = 255  # left half white
    t = VideoTransform(20)
    out = t(frames)
    assert out.shape == (3, 4, 20, 20) and out.min() == -1 and out.max() == 1
    flipped = t(frames, flip=True)
    assert torch.equal(flipped, out.flip(-1))
    assert np.array_equal(to_uint8(out), frames)
