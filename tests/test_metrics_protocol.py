"""The clip protocol: deterministic seeded selection, strides, sources (frames, mp4, tensors), DDP gathering."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from latte.metrics.clips import ClipDataset, extract_features, scan_videos, select_clips, tensor_videos
from latte.metrics.evaluate import evaluate, make_settings


def test_select_clips_seeded_short_videos_dropped_and_offsets():
    lengths = [20, 60, 47, 48, 100, 16, 90, 55, 70, 49, 30, 200]
    a = select_clips(lengths, 5, 16, 3, random_offset=True, seed=1)
    assert a == select_clips(lengths, 5, 16, 3, random_offset=True, seed=1)
    assert a != select_clips(lengths, 5, 16, 3, random_offset=True, seed=2)
    eligible = {i for i, n in enumerate(lengths) if n >= 48}
    assert len(a) == 5 and {i for i, _ in a} <= eligible
    all_real = select_clips(lengths, 2048, 16, 3, random_offset=True, seed=0)
    assert [i for i, _ in all_real] == sorted(eligible)  # num_items = min(len, N)
    for i, start in all_real:
        assert 0 <= start and start + 15 * 3 < lengths[i]
    assert len({s for _, s in all_real}) > 1
    fake = select_clips(lengths, 2048, 16, 1, random_offset=False, seed=0)
    assert all(start == 0 for _, start in fake) and len(fake) == len(lengths)


def test_clip_dataset_applies_stride_and_quantizes_tensors():
    frames = torch.arange(40, dtype=torch.uint8).view(1, 1, 40, 1, 1).expand(2, 3, 40, 4, 4).contiguous()
    entries = tensor_videos(frames)
    ds = ClipDataset(entries, [(0, 5), (1, 0)], num_frames=4, stride=3)
    assert ds[0][0, :, 0, 0].tolist() == [5, 8, 11, 14]
    assert ds[1][0, :, 0, 0].tolist() == [0, 3, 6, 9]
    float_video = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1).expand(1, 3, 3, 2, 2)
    assert tensor_videos(float_video)[0].read([0, 1, 2])[:, 0, 0, 0].tolist() == [0, 128, 255]


def test_frame_folders_and_mp4_sources_match_in_memory(tmp_path):
    from latte.data.video_io import write_mp4

    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (3, 12, 16, 16, 3), dtype=np.uint8)
    for v, video in enumerate(videos):
        folder = tmp_path / "frames" / f"video_{v}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(folder / f"{t}.png")
    entries = scan_videos(tmp_path / "frames")
    assert [e.name for e in entries] == ["video_0", "video_1", "video_2"] and entries[0].num_frames == 12
    memory = tensor_videos(torch.from_numpy(videos).permute(0, 4, 1, 2, 3))
    clips = [(0, 2), (2, 1)]
    for k in range(2):
        assert torch.equal(ClipDataset(entries, clips, 4, 2)[k], ClipDataset(memory, clips, 4, 2)[k])
    smooth = np.repeat(np.linspace(0, 255, 16, dtype=np.uint8)[None, None, :, None], 3, -1)
    write_mp4(tmp_path / "samples" / "a.mp4", np.repeat(np.repeat(smooth, 16, 1), 10, 0), crf=0)
    (tmp_path / "samples" / "a.json").write_text(json.dumps({"caption": "a red circle moving left", "step": 7}))
    (entry,) = scan_videos(tmp_path / "samples")
    assert entry.num_frames == 10 and entry.meta["step"] == 7
    assert np.abs(entry.read([0, 9]).astype(int) - smooth[0].astype(int)).max() <= 3  # lossy chroma only


class MeanColourDetector(torch.nn.Module):
    """A cheap stand-in detector: per-clip mean colour and temporal change, (B, 6)."""

    feature_dim = 6

    def forward(self, videos):
        x = videos.float() / 255
        return torch.cat([x.mean(dim=(2, 3, 4)), (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))], 1)

    def identity(self):
        return {"network": "mean_colour", "sha256": "0" * 64}


def test_identical_real_and_fake_sets_give_zero_and_caching(tmp_path):
    videos = torch.randint(0, 256, (24, 3, 8, 8, 8), dtype=torch.uint8)
    settings = make_settings(metrics=["fvd"], num_real=24, num_fake=24, num_frames=8, real_stride=1,
                             progress=False, real_stats=str(tmp_path / "stats"))
    # random_offset on 8-frame videos with 8-frame clips is always 0, so both sides read the same clips
    result = evaluate(settings, tensor_videos(videos), [tensor_videos(videos)], {"fvd": MeanColourDetector()})
    assert abs(result["runs"][0]["metrics"]["fvd"]) < 1e-9
    assert result["real"]["clips"] == 24 and result["real"]["stride"] == 1
    assert (tmp_path / "stats" / "real_fvd.npz").is_file()
    noisy = (videos.float() + 60 * torch.randn(videos.shape)).clamp(0, 255).to(torch.uint8)
    again = evaluate(settings, None, [tensor_videos(noisy)], {"fvd": MeanColourDetector()})  # from the cache
    assert again["runs"][0]["metrics"]["fvd"] > 1e-3
    other = make_settings(metrics=["fvd"], num_real=24, num_fake=24, num_frames=8, real_stride=1, seed=5,
                          progress=False, real_stats=str(tmp_path / "stats"))
    with pytest.raises(ValueError, match="another protocol"):
        evaluate(other, tensor_videos(videos), [tensor_videos(videos)], {"fvd": MeanColourDetector()})


def _ddp_worker(rank, world, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    videos = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (7, 3, 4, 8, 8), dtype=torch.uint8, generator=videos)
    ds = ClipDataset(tensor_videos(data), [(i, 0) for i in range(7)], 4, 1)
    feats = extract_features(MeanColourDetector(), ds, batch_size=2, progress=False)
    np.save(f"{out_dir}/rank{rank}.npy", feats)
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~10 s: spawning two torch processes
def test_two_gloo_processes_match_one_process(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    data = torch.randint(0, 256, (7, 3, 4, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    single = extract_features(MeanColourDetector(), ClipDataset(tensor_videos(data), [(i, 0) for i in range(7)],
                                                                4, 1), batch_size=3, progress=False)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"), single, rtol=0, atol=1e-12)


def test_step_of_reads_sidecar_checkpoint_then_folder_name():
    from latte.metrics.evaluate import step_of

    entry = tensor_videos(torch.zeros(1, 3, 2, 2, 2, dtype=torch.uint8),
                          [{"steps": 250, "checkpoint": "runs/a/checkpoints/step_0004000"}])
    assert step_of("samples/x", entry) == 4000  # "steps" (sampling steps) is not the training step
    assert step_of("samples/step_300", tensor_videos(torch.zeros(1, 3, 2, 2, 2, dtype=torch.uint8))) == 300
    assert step_of("samples/final", tensor_videos(torch.zeros(1, 3, 2, 2, 2, dtype=torch.uint8))) is None


def test_fvd_preset_crops_non_square_videos_and_records_resize_and_codec(tmp_path):
    """UCF-101 is 320x240: the fvd2048_16f preset centre-crops 240x240 and resizes to 256 (as the reference
    frame converter), so the detector sees the video undistorted; eval.json records the kernel and codec path."""
    from latte.data.video_io import write_mp4
    from latte.metrics.clips import center_crop_resize_uint8

    frames = np.full((16, 240, 320, 3), 128, np.uint8)
    frames[:, :, :40] = (255, 0, 0)  # red bands outside the centred 240x240 square
    frames[:, :, -40:] = (255, 0, 0)
    frames[:, 100:140, 140:180] = (0, 0, 255)  # a blue square in the middle: it must stay square
    for name in ("a", "b"):
        write_mp4(tmp_path / "videos" / f"{name}.mp4", frames, crf=0)
    settings = make_settings("fvd2048_16f", metrics=["fvd"], real_stride=1, progress=False)
    assert (settings.resolution, settings.resize_kernel) == (256, "lanczos")
    entries = scan_videos(tmp_path / "videos")
    clip = ClipDataset(entries, [(0, 0)], 16, 1, settings.resolution, settings.resize_kernel)[0]
    assert clip.shape == (3, 16, 256, 256)
    red = (clip[0] > 200) & (clip[1] < 60) & (clip[2] < 60)
    assert not red.any()  # cropped away, not squashed in
    blue = (clip[2] > 200) & (clip[0] < 60)
    rows, cols = blue[0].nonzero(as_tuple=True)
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert abs(height - width) <= 2 and abs(height - 40 * 256 / 240) <= 3  # aspect kept
    squashed = ClipDataset(entries, [(0, 0)], 16, 1, None)[0]  # without the preset's resize: 320 wide
    assert squashed.shape[-2:] == (240, 320)
    lanczos = center_crop_resize_uint8(frames[:2], 256, "lanczos")
    bilinear = center_crop_resize_uint8(frames[:2], 256, "bilinear-antialias")
    assert lanczos.shape == bilinear.shape == (2, 256, 256, 3) and (lanczos != bilinear).any()

    result = evaluate(settings, tmp_path / "videos", [tmp_path / "videos"], {"fvd": MeanColourDetector()})
    for side in (result["real"], result["runs"][0]["fake"]):
        assert side["resize"] == {"size": 256, "kernel": "lanczos", "crop": "centred min(H, W) square, then resize"}
        assert side["codec_path"]["sources"] == {"video.mp4": 2}
        assert side["codec_path"]["video_decoder"].startswith("PyAV ")
    json.dumps(result)  # eval.json is written from this dict
