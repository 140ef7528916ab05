"""Beyond one clip on the quickstart model: frame conditioning (image-to-video, extension) and spatial-LoRA
personalisation (a new colour learned from stills).

    OMP_NUM_THREADS=1 python benchmarks/bench_extras.py --qs quickstart_out --work /tmp/extras \
        [--fc-steps 600] [--lora-steps 150] [--out benchmarks/extras_quickstart.json] [--parts fc,lora]

``fc``: fine-tune a frame-conditioned copy of the quickstart Latte (``model.frame_conditioning: true``,
``train.init_from`` the quickstart run, ``train.given_frames`` defaults) for ``--fc-steps`` steps, then

* image-to-video: the first frame of fresh clips (training combinations, new placements: synthetic split
  ``val``; and the held-out combinations) and their captions; PSNR of the generated frame 0 against the given
  frame (it is the autoencoder round trip of the given frame, held exactly in latent space) and attribute
  accuracy of the whole clip (evaluator classifier), next to the base model's text-to-video accuracy;
* extension: ``frames = 4 x`` the trained length, clip after clip with half a clip of context; classifier
  accuracy per 8-frame segment (issue bar: within 5 points of 8-frame videos: the fine-tuned model's and the
  base model's) and frame change at segment borders versus inside (bar: <= 1.5x). The quickstart's clips stop at
  the frame's edge, so the fine-tune uses ``--motion wrap`` clips (objects re-enter at the opposite edge) and the
  segments are read by an evaluator retrained on such clips (its accuracy on true 32-frame wrap clips is
  reported next to the model's).

``lora``: 64 stills of a new colour (``--colour``; never in the data or its vocabulary; default orange, RGB 245,
140, 0, hue 34 deg; purple RGB 150, 40, 230, hue 275 deg cannot be learned on the quickstart model: its
autoencoder, trained on red / green / blue / yellow pixels, decodes purple as crimson) circle / square / triangle,
captions "a <colour> <shape> moving <direction>", trained with the shipped recipe
``personalize/quickstart_lora`` (spatial LoRA, temporal layers frozen) for ``--lora-steps`` steps, then videos of
"a <colour> <shape> moving <direction>": circular mean hue of the object pixels per video (bar: within the colour's
hue range, orange 20-50 deg, purple 255-295 deg), direction
accuracy of the classifier (bar >= 90 %), and the training prompts' joint accuracy with and without the adapter
(bar: within 3 points). Training time and the adapter / model file sizes are reported.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latte.config import from_dict
from latte.data.config import SyntheticConfig
from latte.data.synthetic import SyntheticDataset, caption_for, render_clip
from latte.io import load_yaml_mapping
from latte.metrics.synthetic import (ClassifierTrainConfig, attribute_accuracy, load_classifier, parse_caption,
                                     save_classifier)
from latte.quickstart import Budget as QuickstartBudget
from latte.sampling import LattePipeline, save_videos
from latte.training.config import load_run_config, run_config_from_dict
from latte.training.tasks.classifier import train_classifier
from latte.training.trainer import train

from bench_long_video import frame_change  # noqa: E402  (benchmarks/ is the script's folder)

GUIDANCE = QuickstartBudget().cfg_scale  # the quickstart samples with it
NEW_COLOURS = {"orange": ((245, 140, 0), (20.0, 50.0)),  # name: (RGB, hue range in degrees)
               "purple": ((150, 40, 230), (255.0, 295.0))}


def spec_of(run: Path):
    data = load_yaml_mapping(run / "run_config.yaml", "run config")["data"]
    return from_dict(SyntheticConfig, data["synthetic"], prefix="data.synthetic").spec()


def to_tensor(videos: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(videos).permute(0, 4, 1, 2, 3)  # (N, 3, T, H, W) uint8


def accuracy(detector, heads, videos: np.ndarray, prompts: list[str]) -> dict:
    predicted = {k: v.numpy() for k, v in detector.predict(to_tensor(videos)).items()}
    return attribute_accuracy(predicted, [parse_caption(p, heads) for p in prompts], heads)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def object_hue(video: np.ndarray) -> tuple[float, float]:
    """Circular mean hue (degrees) of the object pixels (bright, saturated) of uint8 ``(T, H, W, 3)`` and the
    fraction of object pixels."""
    x = video.reshape(-1, 3).astype(np.float64) / 255.0
    mx, mn = x.max(1), x.min(1)
    keep = (mx > 0.35) & ((mx - mn) / np.maximum(mx, 1e-6) > 0.4)
    if not keep.any():
        return float("nan"), 0.0
    hues = np.array([colorsys.rgb_to_hsv(*p)[0] for p in x[keep]]) * 2 * np.pi
    mean = np.degrees(np.arctan2(np.sin(hues).mean(), np.cos(hues).mean())) % 360
    return float(mean), float(keep.mean())


def sample(pipe, prompts, log, name, gifs: Path | None = None, **kw) -> np.ndarray:
    t0 = time.perf_counter()
    out = pipe(prompts=prompts, sampler="ddim", steps=25, cfg_scale=GUIDANCE, batch_size=16, progress=False, **kw)
    log(f"  {name}: {len(out)} videos in {time.perf_counter() - t0:.0f} s")
    if gifs is not None:
        save_videos(type(out)(out.videos[:4], out.records[:4]), gifs / name, formats=("gif",), fps=4)
    return out.videos


# ---------------------------------------------------------------------------------------------------------------
def wrap_evaluator(qs: Path, work: Path, log):
    """The quickstart's evaluator retrained on ``motion: wrap`` clips (twice the clips and steps: an object split
    across two edges is harder to read), where the object crosses the frame's edges: the bounded-motion evaluator
    misreads clips whose object straddles an edge (on true wrap clips it scores 66-92 % per 8-frame window).
    Cached in ``work/evaluator_wrap``."""
    folder = work / "evaluator_wrap"
    if not (folder / "classifier.json").is_file():
        meta = load_yaml_mapping(qs / "classifier" / "classifier.json", "classifier")
        cfg = from_dict(ClassifierTrainConfig, meta["train_config"])
        cfg.synthetic.motion = "wrap"
        cfg.num_videos, cfg.max_steps = 2 * cfg.num_videos, 2 * cfg.max_steps
        t0 = time.perf_counter()
        model, metrics = train_classifier(cfg, progress=False)
        save_classifier(model, cfg, metrics, folder)
        log(f"wrap evaluator: {time.perf_counter() - t0:.0f} s, val accuracy {metrics['val_accuracy']}")
    return load_classifier(folder)


def true_wrap_clips(spec, prompts_of, frames: int, total: int, repeats: int = 3):
    """uint8 ``(N, total, 32, 32, 3)`` ground-truth ``motion: wrap`` clips with the per-frame motion of
    ``frames``-frame clips, and their captions (every training combination ``repeats`` times)."""
    rng = np.random.default_rng(7)
    clips, prompts = [], []
    for _ in range(repeats):
        for combo in prompts_of:
            attrs = dict(combo, speed=spec.speeds[0])
            clips.append(render_clip(attrs, frames, 32, int(rng.integers(2**31)), spec.background,
                                     spec.object_scale, frames=range(total), motion="wrap"))
            prompts.append(caption_for(combo))
    return np.stack(clips), prompts


def part_fc(qs: Path, work: Path, steps: int, detector, heads, log, gifs, i2v_videos: int, save,
            motion: str = "wrap") -> dict:
    base_run = qs / "latte"
    data = load_yaml_mapping(base_run / "run_config.yaml", "run config")
    data["model"]["frame_conditioning"] = True
    # bounded clips cross 70 % of the frame in 8 frames and stop at its edge: nothing to continue; wrap clips go on
    data["data"]["synthetic"]["motion"] = motion
    if motion != "bounded":
        data["train"]["use_cache"] = False  # the quickstart's latent cache holds its bounded clips
    data["train"].update(run_dir=str(work / "fc"), init_from=str(base_run), max_steps=steps, lr=5e-4,
                         lr_schedule="constant", warmup_steps=0, min_lr=0.0, ema_decay=0.98, ckpt_every=steps,
                         log_every=100, keep_last=1)
    data["validation"]["every"] = 0
    t0, c0 = time.perf_counter(), time.process_time()
    reused = (work / "fc" / "checkpoints" / f"step_{steps:07d}").is_dir()  # rerunning reuses the fine-tuned run
    if not reused:
        train(run_config_from_dict(data))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    seconds, cpu = (None, None) if reused else (seconds, cpu)
    log(f"fc fine-tune: {steps} steps in {seconds} s ({cpu} s CPU)" + (" (reused)" if reused else ""))

    base = LattePipeline.from_run(base_run)
    fc = LattePipeline.from_run(work / "fc")
    spec = spec_of(base_run)
    frames = base.model.config.num_frames
    res = {"fine_tune_steps": steps, "fine_tune_seconds": seconds, "fine_tune_cpu_seconds": cpu}
    for split, count in (("val", i2v_videos), ("heldout", i2v_videos)):
        clips = SyntheticDataset(spec, count, frames, 32, seed=0, split=split)
        prompts = [caption_for(clips.attributes(i)) for i in range(count)]
        given = [clips.render(i)[0] for i in range(count)]
        made = []
        for i in range(count):  # one image per call
            made.append(fc(prompts=[prompts[i]], image=given[i], seed=i, sampler="ddim", steps=25, cfg_scale=GUIDANCE,
                           progress=False).videos[0])
        made = np.stack(made)
        if gifs is not None:
            for i in range(2):
                Image.fromarray(np.concatenate(list(made[i]), axis=1)).save(gifs / f"i2v_{split}_{i}.png")
        t2v = sample(base, prompts, log, f"t2v_{split}")
        res[f"i2v_{split}"] = {
            "videos": count,
            "psnr_frame0_db": float(np.mean([psnr(made[i, 0], given[i]) for i in range(count)])),
            "accuracy": accuracy(detector, heads, made, prompts),
            "base_t2v_accuracy": accuracy(detector, heads, t2v, prompts),
        }
        save(res)
    combos = [c for c in spec.combinations() if not spec.is_heldout(c)]
    prompts = [caption_for(c) for c in combos]
    if motion == "wrap":  # judge wrap videos with an evaluator that can read them
        detector, meta = wrap_evaluator(qs, work, log)
        heads = meta["heads"]
        truth, truth_prompts = true_wrap_clips(spec, combos, frames, 4 * frames)
        res["evaluator_on_true_wrap_segments"] = [
            accuracy(detector, heads, truth[:, s:s + frames], truth_prompts)["joint"]
            for s in range(0, 4 * frames, frames)]
    short = sample(fc, prompts, log, "fc_short", gifs)
    long = sample(fc, prompts, log, "fc_extend_x4", gifs, frames=4 * frames)
    segments = [accuracy(detector, heads, long[:, s:s + frames], prompts)["joint"]
                for s in range(0, long.shape[1], frames)]
    short_acc = accuracy(detector, heads, short, prompts)["joint"]
    base_short_acc = accuracy(detector, heads, sample(base, prompts, log, "base_short"), prompts)["joint"]
    res["extension"] = {"motion": motion, "frames": 4 * frames, "context_frames": frames // 2,
                        "short_joint": short_acc, "base_short_joint": base_short_acc, "segment_joint": segments,
                        "worst_drop_points": 100 * (short_acc - min(segments)),
                        "worst_drop_points_vs_base": 100 * (base_short_acc - min(segments)),
                        "frame_change": frame_change(torch.from_numpy(long).permute(0, 4, 1, 2, 3), frames)}
    return res


# ---------------------------------------------------------------------------------------------------------------
def colour_stills(folder: Path, count: int, shapes, directions, colour: str,
                  caption: str = "a {colour} {shape} moving {direction}") -> Path:
    """``count`` 32 px stills of shapes in the new ``colour`` (a red render recoloured: black background,
    anti-aliased edges keep their coverage) and ``captions.csv``."""
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
    (folder / "captions.csv").write_text("\n".join(rows) + "\n")
    return folder / "captions.csv"


def add_prior_stills(manifest: Path, pipe, prompts: list[str], count: int) -> int:
    """Prior preservation (DreamBooth's remedy for language drift): ``count`` stills of what the model already
    makes — one frame of its own video for each of ``prompts`` (cycled), captioned with the prompt — appended to
    ``manifest``; returns how many."""
    if count <= 0:
        return 0
    chosen = [prompts[i % len(prompts)] for i in range(count)]
    videos = pipe(prompts=chosen, sampler="ddim", steps=25, cfg_scale=GUIDANCE, batch_size=16, progress=False,
                  seed=1000).videos
    rows = []
    for i, (video, prompt) in enumerate(zip(videos, chosen)):
        name = f"prior_{i:03d}.png"
        Image.fromarray(video[i % video.shape[0]]).save(manifest.parent / name)
        rows.append(f"{name},{prompt}")
    manifest.write_text(manifest.read_text() + "\n".join(rows) + "\n")
    return len(rows)


def part_lora(qs: Path, work: Path, steps: int, detector, heads, log, gifs, colour: str = "orange",
              prior: int = 0, overrides: tuple[str, ...] = (),
              still_caption: str = "a {colour} {shape} moving {direction}", preserve: float | None = None,
              eval_seeds: int = 1) -> dict:
    base_run = qs / "latte"
    spec = spec_of(base_run)
    manifest = colour_stills(work / "stills", 64, spec.shapes, spec.directions, colour, still_caption)
    train_prompts = [caption_for(c) for c in spec.combinations() if not spec.is_heldout(c)]
    add_prior_stills(manifest, LattePipeline.from_run(base_run), train_prompts, prior)
    if preserve is not None:  # the recipe's self-distillation weight (train.preservation; 0 = off)
        overrides = (f"train.preservation.weight={preserve}", *overrides)
    config = load_run_config("personalize/quickstart_lora", [
        f"data.path={manifest}", f"autoencoder.path={qs / 'vae' / 'vae'}", f"train.init_from={base_run}",
        f"train.run_dir={work / 'lora'}", f"train.max_steps={steps}", f"train.ckpt_every={steps}", *overrides])
    if config.train.preservation.weight and sorted(config.train.preservation.prompts) != sorted(train_prompts):
        log("note: the recipe preserves other prompts than this quickstart's training captions")
    t0, c0 = time.perf_counter(), time.process_time()
    adapter = work / "lora" / "checkpoints" / f"step_{steps:07d}" / "model"
    reused = adapter.is_dir()  # rerunning reuses the trained adapter
    if not reused:
        train(config)
    seconds, cpu = (None, None) if reused else (time.perf_counter() - t0, time.process_time() - c0)
    log(f"lora: {steps} steps in {seconds} s ({cpu} s CPU)" + (" (reused)" if reused else ""))
    base = LattePipeline.from_run(base_run)
    model_bytes = (adapter / "model.safetensors").stat().st_size
    adapter_bytes = (adapter / "adapter.safetensors").stat().st_size

    new_prompts = [f"a {colour} {s} moving {d}" for s in spec.shapes for d in spec.directions] * 2

    def seeded(prompts, name, gifs=None):  # every prompt with eval_seeds noise seeds (0, 1000, ...)
        videos = [sample(base, prompts, log, name, gifs if k == 0 else None, seed=1000 * k) for k in range(eval_seeds)]
        return np.concatenate(videos)

    before_old = seeded(train_prompts, "old_colours_base")
    before_new = seeded(new_prompts, f"{colour}_base", gifs)
    base.apply_lora(adapter)
    after_old = seeded(train_prompts, "old_colours_lora")
    after_new = seeded(new_prompts, f"{colour}_lora", gifs)
    train_prompts, new_prompts = train_prompts * eval_seeds, new_prompts * eval_seeds

    def hue_stats(videos):
        hues = [object_hue(v)[0] for v in videos]
        low, high = NEW_COLOURS[colour][1]
        inside = [low <= h <= high for h in hues]
        return {"median_hue_deg": float(np.nanmedian(hues)), "videos_in_hue_range": float(np.mean(inside))}

    direction = lambda v: accuracy(detector, heads, v, new_prompts)["direction"]  # noqa: E731
    return {
        "stills": 64, "prior_stills": prior, "preservation_weight": config.train.preservation.weight,
        "preservation_inputs": config.train.preservation.inputs, "eval_seeds": eval_seeds, "steps": steps,
        "train_seconds": seconds, "train_cpu_seconds": cpu,
        "adapter_bytes": adapter_bytes,
        "model_bytes": model_bytes, "adapter_fraction": adapter_bytes / model_bytes,
        "colour": colour, "rgb": NEW_COLOURS[colour][0], "hue_range_deg": NEW_COLOURS[colour][1],
        "new_colour_base": {**hue_stats(before_new), "direction": direction(before_new)},
        "new_colour_lora": {**hue_stats(after_new), "direction": direction(after_new)},
        "recipe_overrides": list(overrides),
        "old_colours_base": accuracy(detector, heads, before_old, train_prompts),
        "old_colours_lora": accuracy(detector, heads, after_old, train_prompts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qs", required=True, help="a `latte quickstart` output folder (latte/, vae/, classifier/)")
    parser.add_argument("--work", required=True, help="scratch folder for the fine-tuned runs and stills")
    parser.add_argument("--parts", default="fc,lora")
    parser.add_argument("--fc-steps", type=int, default=600)
    parser.add_argument("--lora-steps", type=int, default=150)
    parser.add_argument("--colour", default="orange", choices=sorted(NEW_COLOURS), help="the new colour to learn")
    parser.add_argument("--prior", type=int, default=0,
                        help="DreamBooth-style prior stills (frames of the base model's own videos of training "
                             "prompts, plain diffusion loss); the recipe's train.preservation replaces them")
    parser.add_argument("--motion", default="wrap", choices=("wrap", "bounded"),
                        help="motion of the frame-conditioning fine-tune's clips (wrap: objects re-enter at the "
                             "opposite edge, so a video can go on; the extension is judged by a wrap evaluator)")
    parser.add_argument("--preserve", type=float, default=None,
                        help="train.preservation.weight of the adapter (self-distillation on the base model's videos "
                             "of its training prompts); default: the recipe's; 0 = off")
    parser.add_argument("--eval-seeds", type=int, default=1, help="noise seeds per prompt of the LoRA evaluation")
    parser.add_argument("--lora-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the personalize/quickstart_lora recipe, e.g. train.lora.targets=[...]")
    parser.add_argument("--still-caption", default="a {colour} {shape} moving {direction}",
                        help="caption template of the new colour's stills")
    parser.add_argument("--i2v-videos", type=int, default=12, help="image-to-video clips per split (val, heldout)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--gifs", default=None, metavar="DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    qs, work = Path(args.qs), Path(args.work)
    gifs = Path(args.gifs) if args.gifs else None
    if gifs:
        gifs.mkdir(parents=True, exist_ok=True)
    detector, meta = load_classifier(qs / "classifier")
    results = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).is_file() else {}
    log = lambda m: print(m, flush=True)  # noqa: E731

    def save(part: str):
        def write(res: dict) -> None:  # partial results as they come
            results[part] = res
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return write

    if "fc" in args.parts:
        results["frame_conditioning"] = part_fc(qs, work, args.fc_steps, detector, meta["heads"], log, gifs,
                                                args.i2v_videos, save("frame_conditioning"), args.motion)
    if "lora" in args.parts:
        results["personalisation"] = part_lora(qs, work, args.lora_steps, detector, meta["heads"], log, gifs,
                                               args.colour, args.prior, tuple(args.lora_set), args.still_caption,
                                               args.preserve, args.eval_seeds)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
