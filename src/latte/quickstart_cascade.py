"""``latte quickstart --cascade``: the LaVie cascade on top of the quickstart's text-to-video Latte, on a CPU.

After (or together with) the base quickstart (:mod:`latte.quickstart`), in the same output folder ``OUT``:

1. ``cascade_interp``  a tiny ×4 temporal-interpolation U-Net trained on the quickstart's shapes rendered at 4× the
                       frame rate (shipped config ``quickstart_cascade/interp``);
2. ``cascade_vsr``     a tiny ×4 super-resolution U-Net trained on the shapes rendered at 4× the resolution
                       (``quickstart_cascade/vsr``: random crops, whole frames at inference);
3. ``cascade_eval``    both stages sampled through :class:`latte.sampling.cascade.LavieStage` on held-out clips
                       against ground truth (PSNR): interpolation vs linear blending of the condition frames and
                       vs frame repetition, super-resolution vs bicubic upsampling;
4. ``cascade_sample``  the full cascade (:class:`~latte.sampling.cascade.CascadePipeline` with the quickstart's
                       Latte as :class:`~latte.sampling.cascade.LatteBaseStage`): base 8 → 29 frames → ×4, and
                       the evaluation classifier on the base videos and on the final videos brought back to its
                       size (every 4th frame, 4×4 area average);
5. ``cascade_report``  a section of ``OUT/report.md`` (also ``OUT/report_cascade.md``): the bars, the numbers and
                       GIFs of each stage side by side.

Each stage writes ``OUT/stages/cascade_<name>.json`` when done and is skipped when it exists; the trainers
resume from their last checkpoint. The two stages are pixel-space U-Nets (identity autoencoder with
space-to-depth) without text (the condition frames say everything), so their guidance is off (scale 1).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from latte.config import SHIPPED_CONFIGS, ConfigError
from latte.io import atomic_write_yaml, load_yaml_mapping
from latte.quickstart import CONFIG_DIR as BASE_CONFIG_DIR
from latte.quickstart import Budget as BaseBudget
from latte.quickstart import StagedRun
from latte.quickstart_report import write_report_section
from latte.data.transforms import bicubic_upsample, linear_blend

CONFIG_DIR = SHIPPED_CONFIGS / "quickstart_cascade"
FACTOR = 4  # frame-rate and resolution factor of the two stages (LaVie's)
REPORT_BEGIN, REPORT_END = "<!-- cascade section -->", "<!-- end of cascade section -->"


@dataclass
class CascadeBudget:
    """How much work each cascade stage does; ``smoke`` is the end-to-end test's path."""

    interp_steps: Optional[int] = None  # None: the config's value
    vsr_steps: Optional[int] = None
    eval_clips: int = 16  # held-out clips per PSNR comparison
    videos: int = 12  # full-cascade videos (one per prompt, training combinations)
    base_steps: int = BaseBudget().sampling_steps  # base stage (the quickstart's Latte), DDIM, as the quickstart
    interp_sample_steps: int = 2  # DDIM steps of the tiny stages: their x0 predictions give the same PSNR at 2
    # and 25 steps, so the cheapest (docs/cascade.md)
    vsr_sample_steps: int = 2
    vsr_noise_level: int = 0
    cfg_scale: float = BaseBudget().cfg_scale  # base stage guidance (the quickstart's)


CASCADE_BUDGETS = {
    "full": CascadeBudget(),
    "smoke": CascadeBudget(interp_steps=30, vsr_steps=30, eval_clips=2, videos=2, base_steps=2,
                           interp_sample_steps=2, vsr_sample_steps=2),
}


def load_stage_config(name: str) -> dict:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"cascade quickstart config not found: {path} (a broken installation: it ships with the "
                          "package)")
    return load_yaml_mapping(path, "cascade quickstart config")


# ------------------------------------------------------------------------------------------------ helpers

def stage_from_run(run_dir: str | Path, noise_level: Optional[int] = None):
    """The run's :class:`~latte.sampling.cascade.LavieStage` (EMA weights; :func:`latte.sampling.cascade.
    load_trained_stage`), with the super-resolution condition's ``noise_level`` when given."""
    from latte.sampling.cascade import load_trained_stage

    stage = load_trained_stage(run_dir)
    if noise_level is not None:
        stage.noise_level = int(noise_level)
    return stage


def psnr(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over clips of the PSNR (dB) of ``(N, ...)`` videos in [-1, 1] (the VAE report's per-item PSNR)."""
    from latte.encoders.vae_training import psnr as item_psnr

    return float(item_psnr(reference, estimate).mean())


def to_model_space(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., F, H, W, 3)`` → float ``(..., 3, F, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return x.movedim(-1, -4)


def shrink_to(video: np.ndarray, frames: int, size: int) -> np.ndarray:
    """uint8 ``(F, H, W, 3)`` back to ``frames`` evenly spaced frames of ``size × size`` (area average), for the
    classifier (29 → 8 frames keeps every 4th: the base frames' times)."""
    idx = np.linspace(0, video.shape[0] - 1, frames).round().astype(int)
    x = torch.from_numpy(video[idx]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def side_by_side(videos: list[np.ndarray], size: int) -> np.ndarray:
    """uint8 ``(F_i, H_i, W_i, 3)`` videos as one ``(F_max, size, n·size, 3)`` strip: each scaled to ``size``
    (nearest) and stretched in time to the longest (each frame held)."""
    longest = max(v.shape[0] for v in videos)
    panels = []
    for v in videos:
        idx = np.floor(np.arange(longest) * v.shape[0] / longest).astype(int)
        x = torch.from_numpy(v[idx]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="nearest")
        panels.append(x.to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(panels, axis=2)


# ------------------------------------------------------------------------------------------ the quickstart

class CascadeQuickstart(StagedRun):
    """Runs the cascade stages into the base quickstart's folder ``out`` (see the module docstring)."""

    STAGES = ("interp", "vsr", "eval", "sample", "report")
    TITLES = {"interp": "train the x4 interpolation stage", "vsr": "train the x4 super-resolution stage",
              "eval": "held-out PSNR of both stages", "sample": "full cascade from the text-to-video model",
              "report": "write the cascade report section"}
    MARKER = "cascade_"  # beside the base quickstart's stage results in OUT/stages

    def __init__(self, out: str | Path = "quickstart_out", budget: str = "full", progress: bool = True,
                 log: Callable[[str], None] = print):
        self.out = Path(out).resolve()
        self.budget = CASCADE_BUDGETS[budget]
        self.progress = progress
        self.log = log
        self.data = load_yaml_mapping(BASE_CONFIG_DIR / "data.yaml", "quickstart config")
        self.paths = {"interp": self.out / "cascade" / "interp", "vsr": self.out / "cascade" / "vsr",
                      "samples": self.out / "cascade" / "samples", "configs": self.out / "configs",
                      "stages": self.out / "stages", "latte": self.out / "latte", "classifier": self.out / "classifier"}

    # -- configs -------------------------------------------------------------------------------------------
    def stage_config(self, name: str) -> dict:
        """The training config of stage ``interp`` / ``vsr``: the shipped one with the quickstart's shapes,
        colours and directions, this folder's run_dir and the budget's steps."""
        cfg = load_stage_config(name)
        syn = cfg["data"]["synthetic"]
        for key in ("shapes", "colors", "directions", "object_scale", "speeds"):
            syn[key] = copy.deepcopy(self.data["synthetic"][key])
        cfg["train"]["run_dir"] = str(self.paths[name])
        steps = getattr(self.budget, f"{name}_steps")
        if steps:
            cfg["train"].update(max_steps=steps, warmup_steps=min(cfg["train"]["warmup_steps"], steps // 5),
                                ckpt_every=steps, log_every=max(1, steps // 5))
        return cfg

    def _dataset(self, name: str, split: str, count: int):
        """The held-out clips of stage ``name``'s data at the base quickstart's size (``val``: fresh placements)."""
        from latte.config import from_dict
        from latte.data.config import SyntheticConfig
        from latte.data.synthetic import SyntheticDataset

        syn = from_dict(SyntheticConfig, self.stage_config(name)["data"]["synthetic"], prefix="data.synthetic")
        # clips like the base stage's videos (8 frames of 32 px), rendered at 4x the frame rate / resolution
        return SyntheticDataset(syn.spec(), count, self.data["num_frames"], self.data["image_size"], seed=syn.seed,
                                split=split)

    # -- stages --------------------------------------------------------------------------------------------
    def _train(self, name: str) -> dict:
        from latte.training.tasks.lavie import load_lavie_run_config, train_lavie

        data = self.stage_config(name)
        self.paths["configs"].mkdir(parents=True, exist_ok=True)
        path = self.paths["configs"] / f"cascade_{name}.yaml"
        atomic_write_yaml(path, data, f"# equivalent command: latte train {path}\n")
        cfg = load_lavie_run_config(path)
        resume = str(self.paths[name]) if (self.paths[name] / "checkpoints" / "latest").is_file() else None
        cpu = time.process_time()
        result = train_lavie(cfg, resume=resume, device="cpu", progress=self.progress)
        return {"step": result.step, "checkpoint": str(result.last_checkpoint), "config": str(path),
                "cpu_seconds": time.process_time() - cpu}

    def stage_interp(self) -> dict:
        return self._train("interp")

    def stage_vsr(self) -> dict:
        return self._train("vsr")

    def stage_settings(self):
        """Per-stage sampler settings of the tiny stages (guidance off: they are not text-conditioned)."""
        from latte.sampling.cascade import StageSettings

        b = self.budget
        return {"interp": StageSettings(cfg_scale=1.0, steps=b.interp_sample_steps, sampler="ddim"),
                "vsr": StageSettings(cfg_scale=1.0, steps=b.vsr_sample_steps, sampler="ddim")}

    @torch.no_grad()
    def stage_eval(self) -> dict:
        b = self.budget
        settings = self.stage_settings()
        result = {"clips": b.eval_clips}
        # interpolation: base clips (every 4th frame of the 4x-rate render) -> the 4x-rate render
        interp = stage_from_run(self.paths["interp"])
        ds = self._dataset("interp", "val", b.eval_clips)
        truth = torch.stack([to_model_space(ds.render(i, frame_rate=FACTOR)) for i in range(b.eval_clips)])
        base = truth[:, :, ::FACTOR]
        made = torch.cat([interp.interpolate(base[i:i + 1], settings["interp"], _generator(i), FACTOR)
                          for i in range(b.eval_clips)]).clamp(-1, 1)
        from latte.data.transforms import interpolation_condition

        mid = [j for j in range(truth.shape[2]) if j % FACTOR]  # the frames the stage has to invent
        result["interp"] = {
            "model_psnr": psnr(made[:, :, mid], truth[:, :, mid]),
            "linear_blend_psnr": psnr(linear_blend(base, FACTOR)[:, :, mid], truth[:, :, mid]),
            "repeat_psnr": psnr(interpolation_condition(truth, FACTOR)[:, :, mid], truth[:, :, mid]),
            "model_psnr_all_frames": psnr(made, truth), "frames": f"{base.shape[2]} -> {truth.shape[2]}",
            "size": int(truth.shape[-1]), "steps": settings["interp"].steps}
        # super-resolution: the quickstart-size render -> the 4x render of the same clip
        vsr = stage_from_run(self.paths["vsr"], noise_level=b.vsr_noise_level)
        ds = self._dataset("vsr", "val", b.eval_clips)
        high = torch.stack([to_model_space(ds.render(i, upscale=FACTOR)) for i in range(b.eval_clips)])
        low = torch.stack([to_model_space(ds.render(i)) for i in range(b.eval_clips)])
        made = torch.cat([vsr.upscale(low[i:i + 1], settings["vsr"], _generator(i), chunk=8,
                                      noise_level=b.vsr_noise_level) for i in range(b.eval_clips)])
        result["vsr"] = {"model_psnr": psnr(made, high), "bicubic_psnr": psnr(bicubic_upsample(low, FACTOR), high),
                         "size": f"{low.shape[-1]} -> {high.shape[-1]}", "frames": int(low.shape[2]),
                         "steps": settings["vsr"].steps, "noise_level": b.vsr_noise_level}
        return result


    def prompts(self) -> list[str]:
        """The cascade's prompts: training combinations of the quickstart's data, spread over shapes, colours
        and directions (``budget.videos`` of them)."""
        from latte.config import from_dict
        from latte.data.config import SyntheticConfig
        from latte.data.synthetic import caption_for

        spec = from_dict(SyntheticConfig, self.data["synthetic"], prefix="data.synthetic").spec()
        train = [caption_for(c) for c in spec.combinations() if not spec.is_heldout(c)]
        picks = np.linspace(0, len(train) - 1, min(self.budget.videos, len(train))).round().astype(int)
        return [train[i] for i in picks]

    def _accuracy(self, folder: Path) -> dict:
        """The quickstart's evaluation classifier on the videos of ``folder`` (as its ``eval`` stage runs it)."""
        from latte.metrics.evaluate import evaluate, make_settings

        settings = make_settings(metrics=["attribute-accuracy"], num_fake=10**6, num_frames=self.data["num_frames"],
                                 classifier_path=str(self.paths["classifier"]), progress=self.progress)
        settings.resolution = None
        return evaluate(settings, None, [str(folder)])["runs"][0]["metrics"]["attribute_accuracy"]

    @torch.no_grad()
    def stage_sample(self) -> dict:
        from latte.data import write_gif
        from latte.sampling.cascade import CascadePipeline, LatteBaseStage, StageSettings
        from latte.sampling.outputs import save_videos
        from latte.sampling.pipeline import LattePipeline, SampleOutput

        if not (self.paths["latte"] / "checkpoints" / "latest").is_file():
            raise FileNotFoundError(f"{self.paths['latte']}: no trained text-to-video model; run the base quickstart "
                                    f"into {self.out} first (latte quickstart --out {self.out})")
        b = self.budget
        pipe = CascadePipeline(base=LatteBaseStage(LattePipeline.from_run(self.paths["latte"])),
                               interp=stage_from_run(self.paths["interp"]),
                               vsr=stage_from_run(self.paths["vsr"], noise_level=b.vsr_noise_level))
        settings = {"base": StageSettings(sampler="ddim", steps=b.base_steps, cfg_scale=b.cfg_scale),
                    **self.stage_settings()}
        size, frames = self.data["image_size"], self.data["num_frames"]
        outputs = {"base": [], "final": [], "final_small": []}
        records, seconds = [], {s: 0.0 for s in ("base", "interp", "vsr")}
        showcase = self.paths["samples"] / "showcase"
        showcase.mkdir(parents=True, exist_ok=True)
        for i, prompt in enumerate(self.prompts()):
            out = pipe.run(prompt, seed=i, settings=settings, noise_level=b.vsr_noise_level, vsr_chunk=8,
                           progress=self.progress)
            stage_videos = {r["stage"]: r["video"] for r in out.stages}
            for r in out.stages:
                seconds[r["stage"]] += r["seconds"]
            outputs["base"].append(stage_videos["base"])
            outputs["final"].append(out.video)
            outputs["final_small"].append(shrink_to(out.video, frames, size))
            records.append({"index": i, "prompt": prompt, "seed": i, "cascade": out.record})
            if i < 4:
                strip = side_by_side([stage_videos["base"], stage_videos["interp"], out.video], out.video.shape[1])
                write_gif(showcase / f"{i:02d}.gif", np.ascontiguousarray(strip), fps=12)
        for name, videos in outputs.items():
            fps = 8 if name == "base" else 24
            save_videos(SampleOutput(np.stack(videos), records), self.paths["samples"] / name, formats=("mp4",),
                        fps=fps)
        acc_base = self._accuracy(self.paths["samples"] / "base")
        acc_final = self._accuracy(self.paths["samples"] / "final_small")
        return {"videos": len(records), "accuracy_base": acc_base, "accuracy_final": acc_final,
                "stage_seconds": seconds, "settings": {k: vars(v) for k, v in settings.items()},
                "noise_level": b.vsr_noise_level, "showcase": sorted(str(p.relative_to(self.out))
                                                                      for p in showcase.glob("*.gif"))}

    def stage_report(self) -> dict:
        path = write_cascade_report(self)
        return {"report": str(path)}


BARS = {"interp_over_blend_db": 1.0, "vsr_over_bicubic_db": 2.0, "accuracy_drop": 0.05, "extra_minutes": 10.0}


def cascade_bars(qs: CascadeQuickstart) -> list[tuple[str, str, str, bool]]:
    """``(measure, value, bar, met)`` rows of the cascade quickstart (from the stage markers)."""
    ev, sm = qs.stage_result("eval"), qs.stage_result("sample")
    it, vs = ev["interp"], ev["vsr"]
    a_base, a_final = sm["accuracy_base"]["joint"], sm["accuracy_final"]["joint"]
    minutes = sum((qs.stage_result(s) or {}).get("seconds", 0.0) for s in qs.STAGES) / 60
    return [
        ("interpolation PSNR of the in-between frames, model / linear blend / frame repetition",
         f"{it['model_psnr']:.2f} / {it['linear_blend_psnr']:.2f} / {it['repeat_psnr']:.2f} dB",
         f"≥ blend + {BARS['interp_over_blend_db']:.0f} dB and > repetition",
         it["model_psnr"] >= it["linear_blend_psnr"] + BARS["interp_over_blend_db"]
         and it["model_psnr"] > it["repeat_psnr"]),
        ("super-resolution PSNR, model / bicubic", f"{vs['model_psnr']:.2f} / {vs['bicubic_psnr']:.2f} dB",
         f"≥ bicubic + {BARS['vsr_over_bicubic_db']:.0f} dB",
         vs["model_psnr"] >= vs["bicubic_psnr"] + BARS["vsr_over_bicubic_db"]),
        ("joint attribute accuracy, base videos / final cascade videos (shrunk to the classifier's size)",
         f"{a_base:.1%} / {a_final:.1%}", f"drop ≤ {BARS['accuracy_drop']:.0%}",
         a_final >= a_base - BARS["accuracy_drop"]),
        ("extra wall time of the cascade quickstart", f"{minutes:.1f} min", f"≤ {BARS['extra_minutes']:.0f} min",
         minutes <= BARS["extra_minutes"]),
    ]


def write_cascade_report(qs: CascadeQuickstart) -> Path:
    """``OUT/report_cascade.md``, and the same section inside ``OUT/report.md`` (between markers, replaced on
    every run; appended when the base report has none)."""
    ev, sm = qs.stage_result("eval"), qs.stage_result("sample")
    rows = [f"| {m} | {v} | {b}: {'met' if ok else 'NOT met'} |" for m, v, b, ok in cascade_bars(qs)]
    times = [f"| {qs.TITLES[s]} | {(qs.stage_result(s) or {}).get('seconds', 0):.0f} | "
             f"{', '.join(f'{x:.1f}' for x in (qs.stage_result(s) or {}).get('load_average', []))} |"
             for s in qs.STAGES if s != "report"]
    settings = sm["settings"]
    lines = [
        REPORT_BEGIN, "## The LaVie cascade (`latte quickstart --cascade`)", "",
        f"The quickstart's text-to-video Latte as the base stage, then a tiny x4 interpolation U-Net "
        f"({ev['interp']['frames']} frames) and a tiny x4 super-resolution U-Net ({ev['vsr']['size']} px), both "
        f"trained here on the same shapes rendered at 4x the frame rate / resolution. PSNRs on {ev['clips']} "
        f"held-out clips against the 4x renders; sampling: interpolation {settings['interp']['sampler']}-"
        f"{settings['interp']['steps']}, super-resolution {settings['vsr']['sampler']}-{settings['vsr']['steps']} at "
        f"noise level {sm['noise_level']}, no guidance (the tiny stages are not text-conditioned).", "",
        "| measure | value | bar |", "|---|---|---|", *rows, "",
        f"Accuracy on {sm['videos']} prompts of training combinations, the same seeds for both columns "
        f"(final videos: every 4th frame, 4x4 area average).", "",
        "Base (8 frames) | interpolated (29 frames) | super-resolved (29 frames, 128 px):", "",
        *[f"![cascade {i}]({g})" for i, g in enumerate(sm["showcase"])], "",
        "| cascade stage | seconds | load average (start, end) |", "|---|---|---|", *times, "",
        f"Configs: `{qs.paths['configs']}/cascade_interp.yaml`, `cascade_vsr.yaml` (`latte train` each).", REPORT_END]
    return write_report_section(qs.out, "cascade", "latte quickstart: the cascade", "\n".join(lines) + "\n",
                                REPORT_BEGIN, REPORT_END)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
