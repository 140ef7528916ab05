"""One measurement per process (so peak memory and compilation state belong to that measurement alone).

Tasks (each returns a JSON-able dict):
- ``train``: one optimiser step from cached latents ``(B, C, F, h, w)``: diffusion loss, backward, AdamW.
- ``sample``: a short real DDIM loop with classifier-free guidance (one batched ``2B`` forward per step); the
  per-step time is what the full DDPM-250 / DDIM-50 / DPM-Solver-20 figures are extrapolated from.
- ``vae``: frame-wise encode and decode of clips with a random-weight VAE of the given shape.
"""
from __future__ import annotations

import resource
import time

import torch

from setups import PATHS, SETUPS, build_model, conditioning, device_peak, precision, synchronize, time_calls

from latte.diffusion import classifier_free_guidance, create_diffusion
from latte.models.flops import forward_flops


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def train(setup_name: str, path_name: str, batch: int, repeats: int, device: str,
          gradient_checkpointing: bool = False, warmup: int = 1) -> dict:
    device = torch.device(device)
    setup, path = SETUPS[setup_name], PATHS[path_name]
    model = build_model(setup, path, device, gradient_checkpointing).train()
    cfg = model.config
    diffusion = create_diffusion("")
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, **fused)
    latents = torch.randn(batch, cfg.in_channels, setup.frames, setup.size, setup.size, device=device)
    kwargs, _ = conditioning(setup, cfg, batch, device)

    def forward(x, t, **kw):
        with precision(path, device):
            return model(x, t, **kw).float()

    def step():
        t = torch.randint(0, diffusion.num_timesteps, (batch,), device=device)
        loss = diffusion.training_losses(forward, latents, t, kwargs)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = time_calls(step, device, repeats, warmup=warmup)
    flops = forward_flops(cfg, batch=batch, frames=setup.frames, height=setup.size, width=setup.size,
                          text_length=setup.text_length)
    peak, peak_source = device_peak(device, path.autocast or torch.float32)
    return {**stats, "peak_memory_bytes": peak_memory_bytes(device), "train_flops": flops.training,
            "device_peak_flops": peak, "device_peak_source": peak_source,
            "mfu": flops.training / stats["median_s"] / peak,
            "params": sum(p.numel() for p in model.parameters())}


def sample(setup_name: str, path_name: str, batch: int, steps: int, repeats: int, device: str,
           guidance_scale: float = 7.5) -> dict:
    """Times a real ``steps``-step DDIM loop with CFG; returns seconds per step (per ``batch`` videos)."""
    device = torch.device(device)
    setup, path = SETUPS[setup_name], PATHS[path_name]
    model = build_model(setup, path, device).eval()
    cfg = model.config
    cond, uncond = conditioning(setup, cfg, batch, device)

    def guided_model(x, t, **kw):
        with precision(path, device):
            return model(x, t, **kw).float()

    fn = classifier_free_guidance(guided_model, guidance_scale, cond, uncond, cfg.in_channels)
    diffusion = create_diffusion(str(steps))  # evenly respaced; the per-step cost is what is measured
    shape = (batch, cfg.in_channels, setup.frames, setup.size, setup.size)
    noise = torch.randn(shape, device=device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        stats = time_calls(lambda: diffusion.ddim_sample_loop(fn, shape, noise=noise), device, repeats)
    per_step = stats["median_s"] / steps
    return {**stats, "steps": steps, "seconds_per_step": per_step, "peak_memory_bytes": peak_memory_bytes(device),
            "forward_flops_per_step": forward_flops(cfg, batch=2 * batch, frames=setup.frames, height=setup.size,
                                                    width=setup.size, text_length=setup.text_length).total}


VAE_SHAPES = {
    # the Stable Diffusion VAE (sd-vae-ft-mse) architecture, random weights
    "sd": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    # same 8x downsampling, a fraction of the width (for a quick CPU run)
    "tiny": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=16),
}


def vae(shape: str, frames: int, size: int, repeats: int, device: str, dtype: str = "float32") -> dict:
    """Seconds to encode and to decode ``frames`` frames of ``8·size``² pixels with a random VAE of ``shape``."""
    from diffusers import AutoencoderKL

    from latte.encoders.autoencoders import DiffusersAutoencoder

    device = torch.device(device)
    torch.manual_seed(0)
    net = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        latent_channels=4, **VAE_SHAPES[shape]).to(device, getattr(torch, dtype))
    ae = DiffusersAutoencoder(net, kind="sd_vae", source={"benchmark": shape}, chunk_size=16,
                              sample_posterior=True)
    video = torch.rand(1, 3, frames, 8 * size, 8 * size, device=device) * 2 - 1
    latents = ae.encode(video)
    encode = time_calls(lambda: ae.encode(video), device, repeats)
    decode = time_calls(lambda: ae.decode(latents), device, repeats)
    return {"frames": frames, "encode_s": encode["median_s"], "decode_s": decode["median_s"],
            "peak_memory_bytes": peak_memory_bytes(device)}


TASKS = {"train": train, "sample": sample, "vae": vae}


def run_task(spec: dict) -> dict:
    spec = dict(spec)
    task = TASKS[spec.pop("task")]
    threads = spec.pop("threads", None)
    if threads:
        torch.set_num_threads(threads)
    if spec.get("device", "cpu") == "cuda":  # float32 matmuls as TF32, as the official training script sets
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    start = time.perf_counter()
    result = task(**spec)
    result["wall_s"] = time.perf_counter() - start
    synchronize(torch.device(spec.get("device", "cpu")))
    return result
