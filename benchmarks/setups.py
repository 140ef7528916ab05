"""What the benchmark measures: named model configurations, speed paths and the timing helpers.

A *configuration* is a model size plus its input (frames × latent size, conditioning); a *path* is how the
same model is executed (attention kernel, precision, compilation). The baseline path ``official`` is our
float32 eager model with explicit-softmax attention, as the official Latte code runs; every speed-up is
reported as a ratio against it, measured in the same run on the same machine.
"""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from latte.models import Latte, LatteConfig, preset


@dataclass(frozen=True)
class Setup:
    """A model configuration and its input: latents ``(B, C, frames, size, size)``; ``pixels = 8 · size``."""

    name: str
    model: dict  # preset name under "preset" plus LatteConfig overrides
    frames: int
    size: int  # latent height/width
    text_length: int = 120
    cpu_default: bool = True  # run on CPU unless asked otherwise (too slow / too big otherwise)

    def config(self, attention_backend: str = "sdpa") -> LatteConfig:
        fields = dict(self.model)
        name = fields.pop("preset", None)
        fields.update(num_frames=self.frames, input_size=self.size, attention_backend=attention_backend)
        return preset(name, **fields) if name else LatteConfig(**fields)


_CLASS = dict(conditioning="class", num_classes=101)  # UCF-101 style class-conditional models
SETUPS = {
    "tiny": Setup("tiny", dict(depth=4, hidden_size=128, num_heads=4, patch_size=2, **_CLASS), frames=8, size=16),
    "S/2": Setup("S/2", dict(preset="Latte-S/2", **_CLASS), frames=16, size=32),
    "B/2": Setup("B/2", dict(preset="Latte-B/2", **_CLASS), frames=16, size=32),
    "XL/2": Setup("XL/2", dict(preset="Latte-XL/2", **_CLASS), frames=16, size=32, cpu_default=False),
    "T2V": Setup("T2V", dict(preset="Latte-T2V"), frames=16, size=64, cpu_default=False),
}


@dataclass(frozen=True)
class Path:
    """How the model is executed. ``compile``: 'none', 'blocks' (regional: each transformer block) or 'model'."""

    name: str
    attention: str = "sdpa"
    autocast: torch.dtype | None = None
    compile: str = "none"
    description: str = ""


PATHS = {
    "official": Path("official", attention="math",
                     description="baseline: float32 eager, explicit-softmax attention (as the official code)"),
    "sdpa": Path("sdpa", description="float32, torch scaled_dot_product_attention"),
    "bf16": Path("bf16", autocast=torch.bfloat16, description="sdpa + bf16 autocast (float32 master weights)"),
    "bf16-math": Path("bf16-math", attention="math", autocast=torch.bfloat16,
                      description="bf16 autocast + explicit-softmax attention (CPU: faster than the flash kernel "
                                  "in bf16)"),
    "bf16-compile": Path("bf16-compile", autocast=torch.bfloat16, compile="blocks",
                         description="sdpa + bf16 autocast + torch.compile of each block (regional)"),
    "sdpa-compile": Path("sdpa-compile", compile="blocks", description="float32 sdpa + regional torch.compile"),
}


def build_model(setup: Setup, path: Path, device: torch.device, gradient_checkpointing: bool = False) -> Latte:
    """Random-weight model for ``setup`` executed as ``path`` (weights re-randomised: official init zeroes
    the output layers, which would make some kernels trivially cheap)."""
    torch.manual_seed(0)
    cfg = setup.config(path.attention).replace(gradient_checkpointing=gradient_checkpointing)
    model = Latte(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and p.abs().max() == 0:
                p.normal_(std=0.02)
    model = model.to(device)
    if path.compile == "blocks":
        for block in model.blocks:
            block.compile()
    elif path.compile == "model":
        model.compile()
    return model


def conditioning(setup: Setup, cfg: LatteConfig, batch: int, device) -> tuple[dict, dict]:
    """Conditional and unconditional model kwargs for ``batch`` samples (class ids / random text features)."""
    if cfg.conditioning == "class":
        y = torch.randint(0, cfg.num_classes, (batch,), device=device)
        return {"y": y}, {"y": torch.full_like(y, cfg.num_classes)}
    if cfg.conditioning == "text":
        text = torch.randn(batch, setup.text_length, cfg.text_dim, device=device)
        mask = torch.ones(batch, setup.text_length, dtype=torch.bool, device=device)
        return {"text": text, "text_mask": mask}, {"text": torch.zeros_like(text), "text_mask": mask}
    return {}, {}


def precision(path: Path, device: torch.device):
    return torch.autocast(device.type, dtype=path.autocast) if path.autocast else nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Median / min seconds of ``fn()`` over ``repeats`` timed calls after ``warmup`` untimed ones.

    The first warm-up call's duration is returned too (it includes compilation for compiled paths)."""
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        synchronize(device)
        if i == 0:
            first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times, "first_call_s": first}


def gemm_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 1536, repeats: int = 3) -> float:
    """Measured matmul FLOP/s on this device (best of square ``n`` GEMMs): the CPU's practical peak for MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    stats = time_calls(lambda: a @ b, device, repeats, warmup=2)
    return 2 * n ** 3 / stats["min_s"]


# Dense peak FLOP/s by GPU name and dtype (vendor datasheets, SXM parts; float32 matmuls run as TF32).
GPU_PEAKS = {
    "H100": {torch.bfloat16: 989e12, torch.float32: 494.5e12},
    "H200": {torch.bfloat16: 989e12, torch.float32: 494.5e12},
    "A100": {torch.bfloat16: 312e12, torch.float32: 156e12},
}


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) for MFU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return peaks[dtype], f"{key} datasheet dense {'bf16' if dtype == torch.bfloat16 else 'tf32'}"
    return gemm_peak_flops(device, dtype), f"measured 1536² {str(dtype).removeprefix('torch.')} GEMM"
