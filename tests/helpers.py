"""Shared test helpers, one module for every test file (import them: ``from helpers import tiny_model``).

Groups: reference fixtures; tiny training runs; tiny Latte models; run directories as the trainer lays them out;
tiny text encoders, tokenizers and VAEs built locally (no download); the LaVie ``pretrained_models/`` layout; tiny
LaVie stage configs; videos on disk; processes and servers. Optional heavy packages (transformers, diffusers,
tokenizers) are imported inside the functions that need them, so importing this module stays cheap. Fixtures shared
across test files live in conftest.py (pytest finds them there).

``python tests/helpers.py CONFIG.json [--resume PATH] [--kill-at-step N] [--kill-in-save N]
[--signal-at-step N]`` trains in a fresh process; the kill options SIGKILL it at a chosen moment.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from latte.config import from_dict
from latte.data.video_io import write_mp4
from latte.models import Latte, LatteConfig
from latte.training import RunConfig, TensorItems
from latte.training.config import run_config_from_dict, save_run_config

# -- reference fixtures: tests/fixtures/reference (tiny official checkpoints and recorded outputs) -------------
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "reference")


# -- tiny training runs: a run config, structured latents, a dataset, checkpoint weights --------------------------
TINY_MODEL = dict(input_size=8, num_frames=4, in_channels=4, hidden_size=32, depth=2, num_heads=2)


def tiny_config(run_dir, **train) -> dict:
    """Plain-data run config of a ~60k-parameter model on 4x8x8 latents (4 channels)."""
    base = dict(run_dir=str(run_dir), max_steps=6, batch_size=4, lr=1e-3, ema_decay=0.9, log_every=2,
                ckpt_every=3, num_workers=0, seed=7)
    base.update(train)
    return {"model": dict(TINY_MODEL), "autoencoder": {"kind": "identity"}, "train": base}


def build(data: dict) -> RunConfig:
    return from_dict(RunConfig, data)


def moving_blobs(n: int = 16, channels: int = 4, frames: int = 4, size: int = 8, seed: int = 0) -> torch.Tensor:
    """``(n, C, F, size, size)`` latents: a Gaussian blob per clip moving one pixel per frame, per-channel sign."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.arange(size).float()
    out = torch.zeros(n, channels, frames, size, size)
    for i in range(n):
        y0, x0 = torch.randint(1, size - 1, (2,), generator=g).tolist()
        dy, dx = [(1, 0), (0, 1), (-1, 0), (0, -1)][i % 4]
        signs = torch.where(torch.rand(channels, generator=g) < 0.5, -1.0, 1.0)
        for f in range(frames):
            cy, cx = (y0 + dy * f) % size, (x0 + dx * f) % size
            blob = torch.exp(-((coords[:, None] - cy) ** 2 + (coords[None, :] - cx) ** 2) / 3.0)
            out[i, :, f] = signs[:, None, None] * (2 * blob - 0.5)
    return out


def tiny_dataset(n: int = 16, classes: int | None = None) -> TensorItems:
    y = torch.arange(n) % classes if classes else None
    return TensorItems(moving_blobs(n), y=y)


def state_of(ckpt_dir, which: str = "model") -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(ckpt_dir, which, "model.safetensors"))


def distributed_worker(rank: int, world_size: int, port: int, config: dict) -> None:
    """One rank of a CPU/gloo process group training ``config`` on :func:`tiny_dataset` (for mp.spawn)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from latte.training.trainer import train

    train(build(config), dataset=tiny_dataset(), device="cpu")


# -- tiny Latte models -----------------------------------------------------------------------------------------
def tiny(variant="interleaved", patch="frame", injection="adaln", temporal="absolute", cond="none", **kw) -> Latte:
    """A 4x4-latent, 2-channel, 4-frame model of any design-space combination (official init)."""
    cfg = dict(input_size=4, num_frames=4, in_channels=2, patch_size=2, hidden_size=16, depth=2, num_heads=2,
               variant=variant, patch_embedding=patch, tubelet_size=2, injection=injection, temporal_pe=temporal,
               conditioning=cond, num_classes=3, text_dim=8)
    cfg.update(kw)
    return Latte(LatteConfig(**cfg))


def randomize(model, std=0.2):
    """Official init zeroes the output paths; re-randomise so every parameter matters (as the fixtures do)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


# 8x8 RGB "latents" for the identity autoencoder: samples are 4-frame 8x8 px videos
TINY_RGB_MODEL = dict(input_size=8, num_frames=4, in_channels=3, hidden_size=32, depth=2, num_heads=2)


def tiny_model(seed=0, **cfg) -> Latte:
    """A tiny :data:`TINY_RGB_MODEL` with non-zero output (the official init zeroes the output layer)."""
    torch.manual_seed(seed)
    model = Latte(LatteConfig(**{**TINY_RGB_MODEL, **cfg}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# text-to-video with single adaLN (PixArt-style, as the diffusers LatteTransformer3DModel): 16-dim text features
T2V = dict(input_size=8, num_frames=4, in_channels=4, hidden_size=32, depth=4, num_heads=2, conditioning="text",
           text_dim=16, adaln="single", pe_base_size=4)


def t2v_model(seed=0) -> Latte:
    torch.manual_seed(seed)
    model = Latte(LatteConfig(**T2V))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# a text model for the packaged MiniLM (384-dim features): 8 frames of 16x16 px, identity autoencoder
TINY_TEXT_MODEL = dict(input_size=16, num_frames=8, in_channels=3, hidden_size=32, depth=2, num_heads=2,
                       conditioning="text", text_dim=384)


# -- run directories as the trainer lays them out: checkpoints/step_XXXXXXX/{model,ema}, run_config.yaml, latest --
def write_run(run_dir, class_names=("apple", "bird", "car")):
    """A class-conditional :func:`tiny_model` run at step 10 (model: seed 0, ema: seed 1), identity autoencoder;
    ``class_names`` go to class_names.json (None: no file). Returns the checkpoint folder."""
    ckpt = run_dir / "checkpoints" / "step_0000010"
    tiny_model(0, conditioning="class", num_classes=3).save_pretrained(ckpt / "model")
    tiny_model(1, conditioning="class", num_classes=3).save_pretrained(ckpt / "ema")
    cfg = run_config_from_dict({"model": {**TINY_RGB_MODEL, "conditioning": "class", "num_classes": 3},
                                "autoencoder": {"kind": "identity"}, "train": {"run_dir": str(run_dir)}})
    save_run_config(cfg, ckpt / "run_config.yaml")
    torch.save({"step": torch.tensor(10)}, ckpt / "train_state.pt")
    (run_dir / "checkpoints" / "latest").write_text("step_0000010\n")
    if class_names:
        (run_dir / "class_names.json").write_text(json.dumps(list(class_names)))
    return ckpt


def write_text_run(run_dir, frame_conditioning: bool = False):
    """A tiny random-weight text-to-video run (identity autoencoder, the packaged offline MiniLM): 8 frames of
    16x16 px, loadable by LattePipeline.load and `latte sample`; ``frame_conditioning``: a model that takes given
    frames (image-to-video, extension)."""
    torch.manual_seed(0)
    config = {**TINY_TEXT_MODEL, "frame_conditioning": frame_conditioning}
    model = Latte(LatteConfig(**config))
    with torch.no_grad():  # the official init zeroes the output layer: make the output depend on the input
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = run_dir / "checkpoints" / "step_0000001"
    model.save_pretrained(ckpt / "ema")
    cfg = run_config_from_dict({"model": config, "autoencoder": {"kind": "identity"},
                                "text_encoder": {"kind": "minilm", "max_length": 16},
                                "train": {"run_dir": str(run_dir)}})
    save_run_config(cfg, ckpt / "run_config.yaml")
    torch.save({"step": torch.tensor(1)}, ckpt / "train_state.pt")
    (run_dir / "checkpoints" / "latest").write_text("step_0000001\n")
    return run_dir


# -- tiny text encoders, tokenizers and VAEs, built locally (no download) ---------------------------------------
# vocabulary of the word-level tokenizers (T5 and CLIP special tokens included)
WORDS = "<pad> </s> <unk> <|startoftext|> <|endoftext|> a red blue square circle moving left right".split()


def word_tokenizer(template: str, pad: str):
    """A tiny word-level fast tokenizer over :data:`WORDS` (``template``: e.g. ``"$A </s>"``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [(w, vocab[w]) for w in ("</s>", "<|startoftext|>", "<|endoftext|>") if w in template]
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token="<unk>")


# vocabulary of :func:`make_tiny_t5` (no CLIP tokens)
T5_WORDS = "<pad> </s> <unk> a red blue square circle moving left right".split()


def make_tiny_t5(folder, d_model=16):
    """A 1-layer T5 encoder and a word-level fast tokenizer ('$A </s>'), built locally (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(T5_WORDS), d_model=d_model, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
                   ).save_pretrained(folder)
    vocab = {w: i for i, w in enumerate(T5_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(folder)
    return folder


def make_tiny_vae(folder):
    """A diffusers AutoencoderKL with 4 latent channels and downsampling factor 2."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                  sample_size=16).save_pretrained(folder)
    return folder


class FakeTextEncoder:
    """Deterministic features per prompt (fast stand-in for MiniLM/T5); the empty prompt gives zeros."""

    dim, max_length, truncate_to_valid = 16, 5, False

    def __init__(self):
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        hidden = torch.stack([torch.full((5, 16), float(len(p))) for p in prompts])
        mask = torch.stack([torch.arange(5) < (1 + len(p) % 4 if p else 1) for p in prompts])
        return hidden, mask

    def null_embedding(self):
        return self.encode([""])

    def identity(self):
        return {"kind": "fake"}


# -- the LaVie pretrained_models/ layout with tiny parts --------------------------------------------------------
LAVIE_FIXTURES = {"base": "lavie_base_tiny.pt", "interp": "lavie_interp_tiny.pt", "vsr": "lavie_vsr_tiny.pt"}
LAVIE_FILES = {"base": "lavie_base.pt", "interp": "lavie_interpolation.pt", "vsr": "lavie_vsr.pt"}


def save_lavie_encoders(folder, levels: int, text_dim: int = 16):
    """``folder``/{vae,text_encoder,tokenizer}: an SD-style AutoencoderKL of ``levels`` levels, a 1-layer CLIP text
    model and a :func:`word_tokenizer` (the layout of a diffusers pipeline folder)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=[8] * levels, down_block_types=["DownEncoderBlock2D"] * levels,
                  up_block_types=["UpDecoderBlock2D"] * levels, layers_per_block=1, latent_channels=4,
                  norm_num_groups=4, sample_size=16).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=text_dim, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77)
                  ).save_pretrained(folder / "text_encoder")
    word_tokenizer("<|startoftext|> $A <|endoftext|>", "<|endoftext|>").save_pretrained(folder / "tokenizer")


def write_lavie_dir(root: Path) -> Path:
    """pretrained_models/ with tiny parts: U-Nets from the fixtures (+ their constructor kwargs as .json), a
    2-level SD-style VAE (x2) and a 3-level upscaler VAE (x4)."""
    root.mkdir(parents=True, exist_ok=True)
    for stage, name in LAVIE_FIXTURES.items():
        m = torch.load(os.path.join(REFERENCE, name), weights_only=True)
        state = {k: v.clone() for k, v in m["state_dict"].items()}
        torch.save({"ema": state} if stage == "vsr" else state, root / LAVIE_FILES[stage])
        (root / LAVIE_FILES[stage]).with_suffix(".json").write_text(json.dumps(m["config"]))
    save_lavie_encoders(root / "stable-diffusion-v1-4", levels=2)
    save_lavie_encoders(root / "stable-diffusion-x4-upscaler", levels=3)
    return root


# -- tiny LaVie stages trained with `latte train` (unconditional, identity autoencoder, synthetic clips) -----------
LAVIE_TINY_UNET = dict(block_out_channels=[32, 32], layers_per_block=1, num_heads=1, norm_num_groups=8,
                       cross_attention_dim=8, attention_levels=[True, False], cross_attention_only=[False, False])
# identity autoencoder: RGB pixels (base, interp) or 2x2 space-to-depth (vsr: 12 channels on the x2 smaller grid)
LAVIE_STAGE_UNET = {
    "base": dict(in_channels=3, out_channels=3),
    "interp": dict(in_channels=6, out_channels=3, spatial_attention="sparse_causal", temporal_attention="plain",
                   temporal_attention_after_ff=True),
    "vsr": dict(in_channels=15, out_channels=12, low_res_channels=3, num_class_embeds=100, linear_projection=True,
                temporal_attention_name="attn_temporal", temporal_resblocks=True, temporal_modules=True),
}


def tiny_lavie_config(stage: str, run_dir, size=8, **train) -> dict:
    """Plain-data LaVie run config of a tiny unconditional ``stage`` on synthetic clips (``size``: the frame side,
    or (height, width)): base 4 frames, interp 5 frames (x2), vsr x2 (max noise level 20); 2 steps by default."""
    t = dict(run_dir=str(run_dir), max_steps=2, batch_size=2, lr=1e-3, ema_decay=0.9, log_every=1, ckpt_every=100,
             num_workers=0, seed=5)
    t.update(train)
    lavie = {"stage": stage, "conditioning": "none"}
    data = {"kind": "synthetic", "image_size": size, "num_frames": 4, "hflip": False,
            "synthetic": {"num_videos": 6, "heldout_videos": 2}}
    config = {"lavie": lavie, "unet": dict(LAVIE_TINY_UNET, **LAVIE_STAGE_UNET[stage]),
              "autoencoder": {"kind": "identity"}, "data": data, "train": t}
    if stage == "interp":
        lavie.update(interp_factor=2, cond_noise_max=20)
        data["num_frames"] = 5
    if stage == "vsr":
        lavie.update(scale_factor=2, patch_size=8, max_noise_level=20)
        config["autoencoder"]["patch_factor"] = 2
        config["diffusion"] = {"prediction_type": "v_prediction"}
        data["image_size"] = 2 * size if isinstance(size, int) else [2 * s for s in size]
    return config


# -- videos on disk (PyAV): brightness ramps that reveal frame indices, odd codecs, a corpus of broken files -----
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


# -- processes and servers ------------------------------------------------------------------------------------
def torchrun(args, tmp_path):
    """``latte sample *args`` under torchrun with 2 CPU processes (cwd ``tmp_path``); the CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "latte", "sample", *args]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout=20.0):
    """Poll ``predicate`` every 20 ms until it is true; AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def require(module: str):
    """Import a test dependency or fail with what to install (CI installs it: .ci/run)."""
    import importlib

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"the demo tests need '{module}': pip install -e '.[dev,demo]' (see .ci/run)")


def _main(argv: list[str]) -> int:
    import argparse

    from latte.training import checkpoint as ckpt
    from latte.training.trainer import train

    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--resume", default=None)
    p.add_argument("--kill-at-step", type=int, default=None)
    p.add_argument("--kill-in-save", type=int, default=None, help="SIGKILL while writing this step's checkpoint")
    p.add_argument("--signal-at-step", type=int, default=None, help="send SIGTERM to itself after this step")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    config = build(json.loads(open(a.config).read()))

    def on_step_end(trainer):
        if trainer.step == a.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if trainer.step == a.signal_at_step:
            os.kill(os.getpid(), signal.SIGTERM)

    if a.kill_in_save is not None:  # die after the first file of that checkpoint is on disk
        real_fsync = ckpt.fsync_path

        def dying_fsync(path):
            real_fsync(path)
            if f"step_{a.kill_in_save:07d}" in str(path):
                os.kill(os.getpid(), signal.SIGKILL)

        ckpt.fsync_path = dying_fsync
    result = train(config, dataset=tiny_dataset(), resume=a.resume, on_step_end=on_step_end)
    print(json.dumps({"step": result.step, "stopped_by": result.stopped_by}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
