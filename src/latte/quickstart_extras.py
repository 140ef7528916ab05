"""``latte quickstart --extras``: beyond one clip on the quickstart's model, on a CPU: personalisation (a new
colour learned from stills) and frame conditioning (image-to-video, 32-frame extension).

After the base quickstart (:mod:`latte.quickstart`; ``OUT/latte``, ``OUT/vae``, ``OUT/classifier``), in the same
output folder ``OUT`` (work files in ``OUT/extras/``):

1. ``extras_personalise``  64 stills of shapes in orange, a colour the data never shows (:func:`colour_stills`),
                           and the shipped recipe ``personalize/quickstart_lora`` (spatial LoRA, temporal layers
                           frozen, self-distillation keeping the quickstart's training captions) on them; then the
                           36 training prompts and the 24 "a orange <shape> moving <direction>" prompts without and
                           with the adapter: object hue of the orange videos (:func:`latte.metrics.synthetic.
                           object_hue`), their direction (evaluation classifier), the old colours' accuracy, the
                           adapter's size and training time;
2. ``extras_frames``       a frame-conditioned copy of the quickstart Latte fine-tuned on ``motion: wrap`` clips
                           (objects re-enter at the opposite edge, so a video can go on): image-to-video (PSNR of
                           frame 0 against the given frame, accuracy) and 4x extension of the training prompts
                           (accuracy per 8-frame segment, read by an evaluator retrained on wrap clips, and the
                           frame change at segment borders vs inside);
3. ``extras_report``       a section of ``OUT/report.md`` (also ``OUT/report_extras.md``): the bars and GIFs.

Each stage writes ``OUT/stages/extras_<name>.json`` when done and is skipped when it exists; a trained adapter or
fine-tune already on disk is reused. ``benchmarks/bench_extras.py`` runs the same parts with its own options.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from latte.config import from_dict
from latte.data import write_gif
from latte.data.config import SyntheticConfig
from latte.data.synthetic import SyntheticDataset, SyntheticSpec, caption_for, render_clip
from latte.io import atomic_write_text, load_yaml_mapping
from latte.metrics.synthetic import (ClassifierTrainConfig, attribute_accuracy, hue_in_range, load_classifier,
                                     parse_caption, save_classifier)
from latte.quickstart import Budget as BaseBudget
from latte.quickstart import StagedRun
from latte.quickstart_cascade import psnr, side_by_side, to_model_space
from latte.quickstart_report import write_report_section
from latte.sampling.cascade import frame_change_at_borders
from latte.sampling.pipeline import LattePipeline

REPORT_BEGIN, REPORT_END = "<!-- extras section -->", "<!-- end of extras section -->"
LORA_RECIPE = "personalize/quickstart_lora"
NEW_COLOURS = {"orange": ((245, 140, 0), (20.0, 50.0)),  # name: (RGB, object hue range in degrees)
               "purple": ((150, 40, 230), (255.0, 295.0))}
STILLS = 64  # stills of the new colour
STILL_CAPTION = "a {colour} {shape} moving {direction}"


@dataclass
class ExtrasBudget:
    """How much work each extras stage does; ``smoke`` is the end-to-end test's path."""

    lora_steps: Optional[int] = None  # None: the recipe's
    preserved_video_steps: Optional[int] = None  # DDIM steps of the recipe's preserved videos; None: the recipe's
    eval_seeds: int = 4  # noise seeds per prompt of the personalisation evaluation (0, 1000, ...)
    fc_steps: int = 3000  # fine-tuning steps of the frame-conditioned model on wrap clips
    preserve_steps: int = 1500  # then training steps with train.preservation toward the base model's videos
    decoder_steps: int = 400  # decoder-only fine-tune of the quickstart autoencoder on wrap clips
    i2v_videos: int = 12  # image-to-video clips per split (val: training combinations; heldout)
    extension_factor: int = 4  # extended videos are this many times the trained length
    extension_seeds: int = 3  # videos per training prompt in the extension measurement (one video: 2.8 points)
    sampling_steps: int = BaseBudget().sampling_steps  # DDIM, as the quickstart
    cfg_scale: float = BaseBudget().cfg_scale  # the quickstart's guidance
    colour: str = "orange"


EXTRAS_BUDGETS = {
    "full": ExtrasBudget(),
    "smoke": ExtrasBudget(lora_steps=2, preserved_video_steps=1, eval_seeds=1, fc_steps=2, preserve_steps=2,
                          decoder_steps=2, i2v_videos=1, sampling_steps=2, extension_seeds=1),
}


# ------------------------------------------------------------------------------------------------ helpers

def spec_of(run: str | Path) -> SyntheticSpec:
    """The synthetic data spec a Latte run was trained on (its ``run_config.yaml``)."""
    data = load_yaml_mapping(Path(run) / "run_config.yaml", "run config")["data"]
    return from_dict(SyntheticConfig, data["synthetic"], prefix="data.synthetic").spec()


def training_prompts(spec: SyntheticSpec) -> list[str]:
    """Captions of the spec's training combinations (held-out pairs left out)."""
    return [caption_for(c) for c in spec.combinations() if not spec.is_heldout(c)]


def accuracy(detector, heads: dict, videos: np.ndarray, prompts: list[str]) -> dict:
    """Attribute accuracy (per head and joint) of uint8 ``(N, T, H, W, 3)`` videos against their prompts."""
    predicted = {k: v.numpy() for k, v in detector.predict(torch.from_numpy(videos).permute(0, 4, 1, 2, 3)).items()}
    return attribute_accuracy(predicted, [parse_caption(p, heads) for p in prompts], heads)


def segment_frame_change(videos: np.ndarray, segment: int) -> dict:
    """Mean |x[t+1] - x[t]| (in [0, 1]) of uint8 ``(N, T, H, W, 3)`` videos at the borders of ``segment``-frame
    segments and inside them, and their ratio (:func:`latte.sampling.cascade.frame_change_at_borders`)."""
    x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).double() / 255.0
    chunks = [(s, s + segment) for s in range(0, x.shape[2], segment)]
    seams = frame_change_at_borders(x, chunks)
    out = {"inside": seams["inside"]}
    if seams["border_pairs"]:
        out.update(border=seams["border"], border_over_inside=seams["ratio"])
    return out


def sample(pipe: LattePipeline, prompts: list[str], budget: ExtrasBudget, seed: int = 0, **kw) -> np.ndarray:
    """uint8 ``(N, T, H, W, 3)`` videos of ``prompts`` (DDIM, the budget's steps and guidance)."""
    return pipe(prompts=prompts, seed=seed, sampler="ddim", steps=budget.sampling_steps, cfg_scale=budget.cfg_scale,
                batch_size=16, progress=False, **kw).videos


def colour_stills(folder: Path, count: int, shapes, directions, colour: str, caption: str = STILL_CAPTION) -> Path:
    """``count`` 32 px stills of shapes in the new ``colour`` (a red render recoloured: black background,
    anti-aliased edges keep their coverage) and ``captions.csv`` (columns path, caption); returns the manifest."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["path,caption"]
    for i in range(count):
        shape, direction = shapes[i % len(shapes)], directions[(i // len(shapes)) % len(directions)]
        attrs = {"shape": shape, "color": "red", "direction": direction, "speed": "fast"}
        frame = render_clip(attrs, 8, 32, int(rng.integers(2**31)), "black", 0.4)[int(rng.integers(8))]
        coverage = frame[..., 0].astype(np.float64) / 235.0
        img = np.clip(np.round(coverage[..., None] * np.array(NEW_COLOURS[colour][0])), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
        rows.append(f"{i:03d}.png," + caption.format(colour=colour, shape=shape, direction=direction))
    atomic_write_text(folder / "captions.csv", "\n".join(rows) + "\n")
    return folder / "captions.csv"


# ------------------------------------------------------------------------------------------ personalisation

def personalisation_config(qs: Path, manifest: Path, run_dir: Path, steps: Optional[int] = None,
                           overrides: tuple[str, ...] = ()):
    """The shipped recipe ``personalize/quickstart_lora`` pointed at the quickstart folder ``qs`` and the stills'
    ``manifest`` (``steps``: None keeps the recipe's)."""
    from latte.training.config import load_run_config

    sets = [f"data.path={manifest}", f"autoencoder.path={qs / 'vae' / 'vae'}", f"train.init_from={qs / 'latte'}",
            f"train.run_dir={run_dir}"]
    if steps:
        sets += [f"train.max_steps={steps}", f"train.ckpt_every={steps}"]
    return load_run_config(LORA_RECIPE, [*sets, *overrides])


def train_once(config, label: str, log: Callable[[str], None] = print, progress: bool = False):
    """Train the run ``config`` (a RunConfig) unless its last checkpoint exists (rerunning reuses it; an
    interrupted run resumes from its latest checkpoint); ``(seconds, CPU seconds)``, both None when reused."""
    from latte.training.trainer import train

    run_dir, steps = Path(config.train.run_dir), config.train.max_steps
    if (run_dir / "checkpoints" / f"step_{steps:07d}").is_dir():
        log(f"{label}: {steps} steps (reused)")
        return None, None
    resume = str(run_dir) if (run_dir / "checkpoints" / "latest").is_file() else None
    t0, c0 = time.perf_counter(), time.process_time()
    train(config, resume=resume, progress=progress)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    log(f"{label}: {steps} steps in {seconds:.0f} s ({cpu:.0f} s CPU)")
    return seconds, cpu


def train_adapter(config, log: Callable[[str], None] = print, progress: bool = False) -> dict:
    """Train the adapter of ``config`` (:func:`train_once`); its folder, seconds and CPU seconds (None when
    reused)."""
    steps = config.train.max_steps
    seconds, cpu = train_once(config, "lora", log, progress)
    adapter = Path(config.train.run_dir) / "checkpoints" / f"step_{steps:07d}" / "model"
    return {"adapter": adapter, "steps": steps, "train_seconds": seconds, "train_cpu_seconds": cpu}


def evaluate_adapter(base_run: Path, adapter: Path, detector, heads: dict, budget: ExtrasBudget,
                     log: Callable[[str], None] = print, gifs: Optional[Path] = None) -> dict:
    """The base model and the base model + ``adapter`` on the training prompts and on "a <colour> <shape> moving
    <direction>" (each shape x direction twice), ``budget.eval_seeds`` noise seeds each (0, 1000, ...): hue of the
    new colour's videos, their direction accuracy, the training prompts' accuracy; with ``gifs``, the first
    new-colour videos of both side by side (``gifs/<colour>_<i>.gif``)."""
    colour = budget.colour
    spec = spec_of(base_run)
    old = training_prompts(spec)
    new = [f"a {colour} {s} moving {d}" for s in spec.shapes for d in spec.directions] * 2
    pipe = LattePipeline.from_run(base_run)

    def seeded(prompts: list[str], name: str) -> np.ndarray:
        t0 = time.perf_counter()
        videos = np.concatenate([sample(pipe, prompts, budget, seed=1000 * k) for k in range(budget.eval_seeds)])
        log(f"  {name}: {len(videos)} videos in {time.perf_counter() - t0:.0f} s")
        return videos

    before_old, before_new = seeded(old, "old_colours_base"), seeded(new, f"{colour}_base")
    pipe.apply_lora(adapter)
    after_old, after_new = seeded(old, "old_colours_lora"), seeded(new, f"{colour}_lora")
    old, new = old * budget.eval_seeds, new * budget.eval_seeds
    hue_range = NEW_COLOURS[colour][1]
    result = {
        "colour": colour, "rgb": NEW_COLOURS[colour][0], "hue_range_deg": hue_range, "eval_seeds": budget.eval_seeds,
        "new_colour_base": {**hue_in_range(before_new, hue_range),
                            "direction": accuracy(detector, heads, before_new, new)["direction"]},
        "new_colour_lora": {**hue_in_range(after_new, hue_range),
                            "direction": accuracy(detector, heads, after_new, new)["direction"]},
        "old_colours_base": accuracy(detector, heads, before_old, old),
        "old_colours_lora": accuracy(detector, heads, after_old, old),
    }
    if gifs is not None:
        picks = [0, len(spec.directions) + 1]  # two shapes, two directions
        result["gifs"] = []
        for i in picks:
            path = gifs / f"{colour}_{i}.gif"
            write_gif(path, np.ascontiguousarray(side_by_side([before_new[i], after_new[i]], 64)), fps=4)
            result["gifs"].append({"path": str(path), "prompt": new[i], "seed": 0})
    return result


def personalise(qs: Path, work: Path, detector, heads: dict, budget: ExtrasBudget, log: Callable[[str], None] = print,
                gifs: Optional[Path] = None, overrides: tuple[str, ...] = (), caption: str = STILL_CAPTION,
                add_stills: Optional[Callable[[Path], int]] = None, progress: bool = False) -> dict:
    """Stills of ``budget.colour`` in ``work/stills``, the recipe's adapter in ``work/lora``, its evaluation
    (:func:`evaluate_adapter`), its file size against the model's. ``add_stills(manifest)`` may append rows to the
    manifest before training and returns how many."""
    spec = spec_of(qs / "latte")
    manifest = colour_stills(work / "stills", STILLS, spec.shapes, spec.directions, budget.colour, caption)
    extra = add_stills(manifest) if add_stills else 0
    if budget.preserved_video_steps:
        overrides = (f"train.preservation.steps={budget.preserved_video_steps}", *overrides)
    config = personalisation_config(qs, manifest, work / "lora", budget.lora_steps, overrides)
    if config.train.preservation.weight and sorted(config.train.preservation.prompts) != sorted(training_prompts(spec)):
        log("note: the recipe preserves other prompts than this quickstart's training captions")
    trained = train_adapter(config, log, progress)
    adapter = trained.pop("adapter")
    model_bytes = (adapter / "model.safetensors").stat().st_size
    adapter_bytes = (adapter / "adapter.safetensors").stat().st_size
    return {"stills": STILLS, "prior_stills": extra, "preservation_weight": config.train.preservation.weight,
            "preservation_inputs": config.train.preservation.inputs, **trained, "adapter_path": str(adapter),
            "adapter_bytes": adapter_bytes, "model_bytes": model_bytes, "adapter_fraction": adapter_bytes / model_bytes,
            "recipe_overrides": list(overrides),
            **evaluate_adapter(qs / "latte", adapter, detector, heads, budget, log, gifs)}


# ------------------------------------------------------------------------------------------ frame conditioning

def frame_conditioning_config(base_run: Path, run_dir: Path, steps: int, motion: str = "wrap") -> dict:
    """The base run's config with ``model.frame_conditioning`` on (``train.given_frames`` defaults), fine-tuned
    from it (``train.init_from``) for ``steps`` steps on clips of ``motion``: the quickstart's bounded clips cross
    70 % of the frame in 8 frames and stop at its edge (nothing to continue); wrap clips go on."""
    data = load_yaml_mapping(base_run / "run_config.yaml", "run config")
    data["model"]["frame_conditioning"] = True
    data["data"]["synthetic"]["motion"] = motion
    if motion != "bounded":
        data["train"]["use_cache"] = False  # the quickstart's latent cache holds its bounded clips
    data["train"].update(run_dir=str(run_dir), init_from=str(base_run), max_steps=steps, lr=5e-4,
                         lr_schedule="constant", warmup_steps=0, min_lr=0.0, ema_decay=0.98,
                         ckpt_every=min(steps, 500), log_every=max(1, min(100, steps // 5)), keep_last=1)
    data["validation"]["every"] = 0
    return data


def fine_tune_frames(base_run: Path, run_dir: Path, steps: int, motion: str = "wrap",
                     log: Callable[[str], None] = print, progress: bool = False) -> dict:
    """Train :func:`frame_conditioning_config` (:func:`train_once`: checkpoints every 500 steps to resume from);
    steps, seconds, CPU seconds (None when reused)."""
    from latte.training.config import run_config_from_dict

    config = run_config_from_dict(frame_conditioning_config(base_run, run_dir, steps, motion))
    seconds, cpu = train_once(config, "fc fine-tune", log, progress)
    return {"fine_tune_steps": steps, "fine_tune_seconds": seconds, "fine_tune_cpu_seconds": cpu}


def preserving_config(fc_run: Path, base_run: Path, run_dir: Path, steps: int, prompts: list[str],
                      autoencoder: Optional[Path] = None, cfg_scale: float = 2.0,
                      preserved_video_steps: Optional[int] = None) -> dict:
    """The frame-conditioned run ``fc_run`` continued for ``steps`` steps with ``train.preservation`` (whole clips,
    weight 1) keeping the *base* model's text-to-video videos of ``prompts``: the wrap fine-tune draws a clip's
    first frames less well than the base (objects that start split across two edges are new to it), and this pulls
    its plain text-to-video back while the given-frame cases keep training on wrap clips. ``autoencoder``: the
    autoencoder folder the run records (a decoder fine-tune of the base's: same latents)."""
    data = load_yaml_mapping(fc_run / "run_config.yaml", "run config")
    data["train"].update(run_dir=str(run_dir), init_from=str(fc_run), max_steps=steps, ckpt_every=min(steps, 500),
                         log_every=max(1, min(100, steps // 5)), keep_last=1)
    data["train"]["preservation"] = {"weight": 1.0, "prompts": list(prompts), "inputs": ["videos"],
                                     "frames": data["model"]["num_frames"], "cfg_scale": cfg_scale,
                                     "frozen_from": str(base_run)}
    if preserved_video_steps:  # DDIM steps of the preserved videos (None: the config's default)
        data["train"]["preservation"]["steps"] = preserved_video_steps
    if autoencoder is not None:
        data["autoencoder"]["path"] = str(autoencoder)
    return data


def fine_tune_preserving(fc_run: Path, base_run: Path, run_dir: Path, steps: int, prompts: list[str],
                         autoencoder: Optional[Path] = None, cfg_scale: float = 2.0,
                         preserved_video_steps: Optional[int] = None, log: Callable[[str], None] = print,
                         progress: bool = False) -> dict:
    """Train :func:`preserving_config` (:func:`train_once`); steps and seconds (None when reused)."""
    from latte.training.config import run_config_from_dict

    config = run_config_from_dict(preserving_config(fc_run, base_run, run_dir, steps, prompts, autoencoder,
                                                    cfg_scale, preserved_video_steps))
    seconds, _ = train_once(config, "fc with preservation", log, progress)
    return {"preserve_steps": steps, "preserve_seconds": seconds}


def fine_tune_decoder(quickstart: Path, run_dir: Path, steps: int, motion: str = "wrap",
                      log: Callable[[str], None] = print, progress: bool = False) -> dict:
    """The quickstart autoencoder's decoder fine-tuned on ``motion`` clips (``latte train-vae`` with
    ``trainable: decoder``; the encoder and every latent unchanged): trained on objects that stay inside the
    frame, it draws an object split across two edges badly (the wrap evaluator reads its round trips of true
    wrap clips 85-97 % right per 8-frame segment; after 400 steps 97-100 %). Returns the folder and seconds."""
    from latte.encoders.vae_training import VAETrainConfig
    from latte.training.tasks.vae import train_vae

    folder, seconds = run_dir / "vae", None  # None: reused
    if not (folder / "config.json").is_file():
        data = load_yaml_mapping(quickstart / "configs" / "vae.yaml", "quickstart VAE config")
        data["data"]["dataset"]["synthetic"]["motion"] = motion
        data.update(run_dir=str(run_dir), init_from=str(quickstart / "vae" / "vae"), trainable="decoder",
                    max_steps=steps, lr=1e-3, warmup_steps=0, ckpt_every=steps, log_every=max(1, min(50, steps)))
        t0 = time.perf_counter()
        train_vae(from_dict(VAETrainConfig, data), progress=progress)
        seconds = time.perf_counter() - t0
        log(f"decoder fine-tune: {steps} steps in {seconds:.0f} s")
    return {"decoder": folder, "decoder_steps": steps, "decoder_seconds": seconds}


def wrap_evaluator(classifier: Path, folder: Path, log: Callable[[str], None] = print, progress: bool = False):
    """The evaluation classifier at ``classifier`` retrained on ``motion: wrap`` clips (twice the clips and steps:
    an object split across two edges is harder to read; the bounded-motion evaluator scores 66-92 % on true wrap
    clips per 8-frame window), cached in ``folder``; ``(detector, meta)`` as :func:`load_classifier`."""
    from latte.training.tasks.classifier import train_classifier

    if not (folder / "classifier.json").is_file():
        meta = load_yaml_mapping(classifier / "classifier.json", "classifier")
        cfg = from_dict(ClassifierTrainConfig, meta["train_config"])
        cfg.synthetic.motion = "wrap"
        cfg.num_videos, cfg.max_steps = 2 * cfg.num_videos, 2 * cfg.max_steps
        t0 = time.perf_counter()
        model, metrics = train_classifier(cfg, progress=progress)
        save_classifier(model, cfg, metrics, folder)
        log(f"wrap evaluator: {time.perf_counter() - t0:.0f} s, val accuracy {metrics['val_accuracy']}")
    return load_classifier(folder)


def true_wrap_clips(spec: SyntheticSpec, combos: list[dict], frames: int, total: int, repeats: int = 3):
    """uint8 ``(N, total, 32, 32, 3)`` ground-truth ``motion: wrap`` clips with the per-frame motion of
    ``frames``-frame clips, and their captions (every combination of ``combos`` ``repeats`` times)."""
    rng = np.random.default_rng(7)
    clips, prompts = [], []
    for _ in range(repeats):
        for combo in combos:
            attrs = dict(combo, speed=spec.speeds[0])
            clips.append(render_clip(attrs, frames, 32, int(rng.integers(2**31)), spec.background,
                                     spec.object_scale, frames=range(total), motion="wrap"))
            prompts.append(caption_for(combo))
    return np.stack(clips), prompts


def image_to_video(fc: LattePipeline, base: LattePipeline, spec: SyntheticSpec, split: str, count: int,
                   detector, heads: dict, budget: ExtrasBudget) -> tuple[dict, np.ndarray, np.ndarray]:
    """Image-to-video on the first frame of ``count`` fresh clips of ``split`` (``val``: training combinations,
    new placements; ``heldout``) with their captions: PSNR of the generated frame 0 against the given frame,
    accuracy of the whole clip, next to the base model's text-to-video accuracy. Returns the numbers, the given
    frames ``(N, H, W, 3)`` and the videos ``(N, T, H, W, 3)``."""
    frames = base.model.config.num_frames
    clips = SyntheticDataset(spec, count, frames, 32, seed=0, split=split)
    prompts = [caption_for(clips.attributes(i)) for i in range(count)]
    given = np.stack([clips.render(i)[0] for i in range(count)])
    made = np.concatenate([sample(fc, [prompts[i]], budget, seed=i, image=given[i]) for i in range(count)])
    t2v = sample(base, prompts, budget)
    return {"videos": count,
            "psnr_frame0_db": psnr(to_model_space(made[:, :1]), to_model_space(given[:, None])),
            "accuracy": accuracy(detector, heads, made, prompts),
            "base_t2v_accuracy": accuracy(detector, heads, t2v, prompts)}, given, made


def extension(fc: LattePipeline, base: LattePipeline, prompts: list[str], detector, heads: dict,
              budget: ExtrasBudget, motion: str = "wrap") -> tuple[dict, np.ndarray]:
    """Videos of ``prompts`` ``budget.extension_factor`` times the trained length, clip after clip with half a clip
    of context: joint accuracy per trained-length segment against the fine-tuned model's and the base model's
    trained-length videos, frame change at segment borders vs inside. Returns the numbers and the long videos."""
    frames = base.model.config.num_frames
    long = sample(fc, prompts, budget, frames=budget.extension_factor * frames)
    segments = [accuracy(detector, heads, long[:, s:s + frames], prompts)["joint"]
                for s in range(0, long.shape[1], frames)]
    short = accuracy(detector, heads, sample(fc, prompts, budget), prompts)["joint"]
    base_short = accuracy(detector, heads, sample(base, prompts, budget), prompts)["joint"]
    return {"motion": motion, "frames": int(long.shape[1]), "context_frames": frames // 2, "videos": len(prompts),
            "short_joint": short, "base_short_joint": base_short, "segment_joint": segments,
            "worst_drop_points": 100 * (short - min(segments)),
            "worst_drop_points_vs_base": 100 * (base_short - min(segments)),
            "frame_change": segment_frame_change(long, frames)}, long


def wrap_truth_accuracy(detector, heads: dict, spec: SyntheticSpec, frames: int, total: int) -> list[float]:
    """The evaluator's joint accuracy per ``frames``-frame segment of true ``total``-frame wrap clips of the
    training combinations (how well it reads such segments at all)."""
    combos = [c for c in spec.combinations() if not spec.is_heldout(c)]
    truth, prompts = true_wrap_clips(spec, combos, frames, total)
    return [accuracy(detector, heads, truth[:, s:s + frames], prompts)["joint"] for s in range(0, total, frames)]


# ------------------------------------------------------------------------------------------ the quickstart

class ExtrasQuickstart(StagedRun):
    """Runs the extras stages into the base quickstart's folder ``out`` (see the module docstring)."""

    STAGES = ("personalise", "frames", "report")
    TITLES = {"personalise": "personalisation: a new colour from 64 stills (spatial LoRA)",
              "frames": "frame conditioning: image-to-video and 4x extension",
              "report": "write the extras report section"}
    MARKER = "extras_"

    def __init__(self, out: str | Path = "quickstart_out", budget: str = "full", progress: bool = True,
                 log: Callable[[str], None] = print):
        self.out = Path(out).resolve()
        self.budget = EXTRAS_BUDGETS[budget]
        self.progress = progress
        self.log = log
        work = self.out / "extras"
        self.paths = {"work": work, "gifs": work / "gifs", "fc": work / "fc", "fc_preserved": work / "fc_preserved",
                      "decoder": work / "decoder", "evaluator_wrap": work / "evaluator_wrap",
                      "stages": self.out / "stages", "latte": self.out / "latte", "classifier": self.out / "classifier"}

    def _check_base(self) -> None:
        if not (self.paths["latte"] / "checkpoints" / "latest").is_file():
            raise FileNotFoundError(f"{self.paths['latte']}: no trained text-to-video model; run the base quickstart "
                                    f"into {self.out} first (latte quickstart --out {self.out})")

    def stage_personalise(self) -> dict:
        self._check_base()
        detector, meta = load_classifier(self.paths["classifier"])
        result = personalise(self.out, self.paths["work"], detector, meta["heads"], self.budget, self.log,
                             self.paths["gifs"], progress=self.progress)
        result["gifs"] = [dict(g, path=str(Path(g["path"]).relative_to(self.out))) for g in result["gifs"]]
        return result

    def stage_frames(self) -> dict:
        self._check_base()
        b = self.budget
        base_run = self.paths["latte"]
        result = fine_tune_frames(base_run, self.paths["fc"], b.fc_steps, "wrap", self.log, self.progress)
        decoder = fine_tune_decoder(self.out, self.paths["decoder"], b.decoder_steps, "wrap", self.log, self.progress)
        spec = spec_of(base_run)
        result.update(fine_tune_preserving(self.paths["fc"], base_run, self.paths["fc_preserved"], b.preserve_steps,
                                           training_prompts(spec), decoder.pop("decoder"), b.cfg_scale,
                                           b.preserved_video_steps, self.log, self.progress), **decoder)
        detector, meta = load_classifier(self.paths["classifier"])
        base, fc = LattePipeline.from_run(base_run), LattePipeline.from_run(self.paths["fc_preserved"])
        gifs = []
        for split in ("val", "heldout"):
            result[f"i2v_{split}"], given, made = image_to_video(fc, base, spec, split, b.i2v_videos, detector,
                                                                  meta["heads"], b)
            for i in range(min(1, len(made))):  # one strip per split: the given frame (held) | the video
                path = self.paths["gifs"] / f"i2v_{split}_{i}.gif"
                write_gif(path, np.ascontiguousarray(side_by_side([given[i][None], made[i]], 64)), fps=4)
                gifs.append({"kind": f"image-to-video ({split})", "path": str(path.relative_to(self.out))})
        frames = base.model.config.num_frames
        wrap_detector, wrap_meta = wrap_evaluator(self.paths["classifier"], self.paths["evaluator_wrap"], self.log,
                                                  self.progress)
        result["evaluator_on_true_wrap_segments"] = wrap_truth_accuracy(
            wrap_detector, wrap_meta["heads"], spec, frames, b.extension_factor * frames)
        prompts = training_prompts(spec)
        result["extension"], long = extension(fc, base, prompts * b.extension_seeds, wrap_detector,
                                              wrap_meta["heads"], b)
        for i in (0, len(prompts) // 2):  # two extensions (first seed): different shapes and colours
            path = self.paths["gifs"] / f"extension_{i:02d}.gif"
            write_gif(path, np.ascontiguousarray(side_by_side([long[i]], 64)), fps=8)
            gifs.append({"kind": f"{long.shape[1]}-frame extension: {prompts[i]}",
                         "path": str(path.relative_to(self.out))})
        result["gifs"] = gifs
        return result

    def stage_report(self) -> dict:
        return {"report": str(write_extras_report(self))}


BARS = {"hue_in_range": 0.90, "direction": 0.90, "old_colours_points": 3.0, "adapter_fraction": 0.05,
        "train_seconds": 180.0, "segment_points": 5.0, "border_over_inside": 1.5}


def extras_bars(qs: ExtrasQuickstart) -> list[tuple[str, str, str, bool]]:
    """``(measure, value, bar, met)`` rows of the extras quickstart (issue 21's bars, from the stage markers)."""
    p, f = qs.stage_result("personalise"), qs.stage_result("frames")
    new, new_base = p["new_colour_lora"], p["new_colour_base"]
    old_base, old_lora = p["old_colours_base"]["joint"], p["old_colours_lora"]["joint"]
    ext = f["extension"]
    worst = min(ext["segment_joint"])
    ratio = ext["frame_change"].get("border_over_inside", float("nan"))
    seconds = p["train_seconds"]
    low, high = p["hue_range_deg"]
    return [
        (f"{p['colour']} videos whose object hue is in {low:.0f}-{high:.0f} deg, adapter (base)",
         f"{new['videos_in_hue_range']:.1%} ({new_base['videos_in_hue_range']:.1%})",
         f"≥ {BARS['hue_in_range']:.0%}", new["videos_in_hue_range"] >= BARS["hue_in_range"]),
        (f"direction accuracy of the {p['colour']} videos, adapter (base)",
         f"{new['direction']:.1%} ({new_base['direction']:.1%})", f"≥ {BARS['direction']:.0%}",
         new["direction"] >= BARS["direction"]),
        ("joint accuracy of the training prompts (old colours), base / adapter", f"{old_base:.1%} / {old_lora:.1%}",
         f"drop ≤ {BARS['old_colours_points']:.0f} points",
         100 * (old_base - old_lora) <= BARS["old_colours_points"]),
        ("adapter file / model file", f"{p['adapter_fraction']:.1%}", f"≤ {BARS['adapter_fraction']:.0%}",
         p["adapter_fraction"] <= BARS["adapter_fraction"]),
        ("adapter training wall time", "reused (not timed)" if seconds is None else f"{seconds:.0f} s",
         f"≤ {BARS['train_seconds'] / 60:.0f} min", seconds is not None and seconds <= BARS["train_seconds"]),
        (f"{ext['frames']}-frame extension: worst segment vs the fine-tuned model's 8-frame videos",
         f"{worst:.1%} vs {ext['short_joint']:.1%}", f"within {BARS['segment_points']:.0f} points",
         ext["worst_drop_points"] <= BARS["segment_points"]),
        (f"{ext['frames']}-frame extension: worst segment vs the base model's 8-frame videos",
         f"{worst:.1%} vs {ext['base_short_joint']:.1%}", f"within {BARS['segment_points']:.0f} points",
         ext["worst_drop_points_vs_base"] <= BARS["segment_points"]),
        ("extension: frame change at segment borders / inside", f"{ratio:.2f}",
         f"≤ {BARS['border_over_inside']}", ratio <= BARS["border_over_inside"]),
    ]


def write_extras_report(qs: ExtrasQuickstart) -> Path:
    """``OUT/report_extras.md``, and the same section inside ``OUT/report.md`` (between markers, replaced on every
    run; appended when the report has none)."""
    p, f = qs.stage_result("personalise"), qs.stage_result("frames")
    b = qs.budget
    rows = [f"| {m} | {v} | {bar}: {'met' if ok else 'NOT met'} |" for m, v, bar, ok in extras_bars(qs)]
    ext = f["extension"]
    i2v = [f"| {split} | {f[f'i2v_{split}']['videos']} | {f[f'i2v_{split}']['psnr_frame0_db']:.1f} | "
           f"{f[f'i2v_{split}']['accuracy']['joint']:.1%} | {f[f'i2v_{split}']['base_t2v_accuracy']['joint']:.1%} |"
           for split in ("val", "heldout")]
    per_attribute = " / ".join(f"{k} {p['old_colours_base'][k]:.1%} → {p['old_colours_lora'][k]:.1%}"
                               for k in ("shape", "color", "direction") if k in p["old_colours_base"])
    times = [f"| {qs.TITLES[s]} | {(qs.stage_result(s) or {}).get('seconds', 0):.0f} |"
             for s in qs.STAGES if s != "report"]
    lines = [
        REPORT_BEGIN, "## Personalisation and frame conditioning (`latte quickstart --extras`)", "",
        f"**Personalisation**: {p['stills']} stills of shapes in {p['colour']} (RGB {tuple(p['rgb'])}, a colour the "
        f"data never shows) and the shipped recipe `{LORA_RECIPE}` (spatial LoRA, temporal layers frozen, "
        f"self-distillation weight {p['preservation_weight']:g} on the quickstart's training captions), "
        f"{p['steps']} steps. Videos of \"a {p['colour']} <shape> moving <direction>\" and of the training prompts, "
        f"{p['eval_seeds']} seed(s) each, DDIM {b.sampling_steps}, guidance {b.cfg_scale:g}.", "",
        f"**Frame conditioning**: the quickstart Latte fine-tuned with `model.frame_conditioning: true` for "
        f"{f['fine_tune_steps']} steps on `motion: wrap` clips (objects re-enter at the opposite edge), then "
        f"{f['preserve_steps']} more with `train.preservation` keeping the base model's own text-to-video videos "
        f"(whole clips, weight 1); videos decoded by the quickstart autoencoder with its decoder fine-tuned on wrap "
        f"clips ({f['decoder_steps']} steps, `latte train-vae` `trainable: decoder`: same latents); "
        f"{ext['frames']}-frame videos of the training prompts ({ext['videos']} videos: {b.extension_seeds} noise "
        f"seed(s) each) clip after clip with {ext['context_frames']} context frames, each 8-frame segment read by "
        "the evaluator retrained on wrap clips "
        f"(on true wrap clips it reads {', '.join(f'{a:.0%}' for a in f['evaluator_on_true_wrap_segments'])} "
        "per segment).", "",
        "| measure | value | bar |", "|---|---|---|", *rows, "",
        f"Old colours per attribute, base → adapter: {per_attribute}. Segment accuracy of the extension: "
        f"{', '.join(f'{a:.1%}' for a in ext['segment_joint'])}.", "",
        "Image-to-video (the first frame of fresh clips and their captions; frame 0 is held in latent space, its "
        "PSNR is the autoencoder's round trip):", "",
        "| clips | videos | PSNR frame 0 (dB) | joint accuracy | base text-to-video accuracy |",
        "|---|---|---|---|---|",
        *i2v, "",
        "Base model | with the adapter, same prompt and seed:", "",
        *[f"![{g['prompt']}]({g['path']}) \"{g['prompt']}\"" for g in p["gifs"]], "",
        "Frame conditioning (image-to-video: the given frame | the video; extensions):", "",
        *[f"![{g['kind']}]({g['path']}) {g['kind']}" for g in f["gifs"]], "",
        "| extras stage | seconds |", "|---|---|", *times, "",
        f"Work files: `{qs.paths['work']}` (stills, adapter, fine-tuned run, wrap evaluator). "
        "`benchmarks/bench_extras.py` runs the same measurements with more options.", REPORT_END]
    return write_report_section(qs.out, "extras", "latte quickstart: extras", "\n".join(lines) + "\n",
                                REPORT_BEGIN, REPORT_END)
