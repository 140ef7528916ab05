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
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latte.metrics.synthetic import load_classifier
from latte.quickstart_extras import (EXTRAS_BUDGETS, NEW_COLOURS, STILL_CAPTION, extension, fine_tune_decoder,
                                     fine_tune_frames, fine_tune_preserving, image_to_video, personalise, sample,
                                     spec_of, training_prompts, wrap_evaluator, wrap_truth_accuracy)
from latte.sampling import LattePipeline, SampleOutput, save_videos

BUDGET = EXTRAS_BUDGETS["full"]  # DDIM 25 at the quickstart's guidance


def save_gifs(videos: np.ndarray, gifs: Path | None, name: str) -> None:
    if gifs is not None:
        save_videos(SampleOutput(videos[:4], [{"index": i} for i in range(min(4, len(videos)))]), gifs / name,
                    formats=("gif",), fps=4)


# ---------------------------------------------------------------------------------------------------------------
def part_fc(qs: Path, work: Path, steps: int, detector, heads, log, gifs, i2v_videos: int, save,
            motion: str = "wrap", preserve_steps: int = 0, decoder_steps: int = 0) -> dict:
    base_run = qs / "latte"
    budget = replace(BUDGET, fc_steps=steps, i2v_videos=i2v_videos)
    spec = spec_of(base_run)
    res = fine_tune_frames(base_run, work / "fc", steps, motion, log)
    run, decoder = work / "fc", None
    if decoder_steps:  # the autoencoder's decoder fine-tuned on the same clips (same latents)
        found = fine_tune_decoder(qs, work / "decoder", decoder_steps, motion, log)
        decoder = found.pop("decoder")
        res.update(found)
    if preserve_steps:  # then with train.preservation toward the base model's text-to-video
        res.update(fine_tune_preserving(work / "fc", base_run, work / "fc_preserved", preserve_steps,
                                        training_prompts(spec), decoder, budget.cfg_scale, log=log))
        run = work / "fc_preserved"
    base = LattePipeline.from_run(base_run)
    fc = LattePipeline.from_run(run)
    frames = base.model.config.num_frames
    for split in ("val", "heldout"):
        t0 = time.perf_counter()
        res[f"i2v_{split}"], _, made = image_to_video(fc, base, spec, split, i2v_videos, detector, heads, budget)
        log(f"  i2v_{split}: {i2v_videos} videos in {time.perf_counter() - t0:.0f} s")
        if gifs is not None:
            for i in range(min(2, len(made))):
                Image.fromarray(np.concatenate(list(made[i]), axis=1)).save(gifs / f"i2v_{split}_{i}.png")
        save(res)
    if motion == "wrap":  # judge wrap videos with an evaluator that can read them
        detector, meta = wrap_evaluator(qs / "classifier", work / "evaluator_wrap", log)
        heads = meta["heads"]
        res["evaluator_on_true_wrap_segments"] = wrap_truth_accuracy(detector, heads, spec, frames,
                                                                     budget.extension_factor * frames)
    prompts = training_prompts(spec)
    t0 = time.perf_counter()
    res["extension"], long = extension(fc, base, prompts, detector, heads, budget, motion)
    log(f"  extension: {len(prompts)} prompts in {time.perf_counter() - t0:.0f} s")
    save_gifs(long, gifs, "fc_extend_x4")
    return res


# ---------------------------------------------------------------------------------------------------------------
def add_prior_stills(manifest: Path, pipe, prompts: list[str], count: int) -> int:
    """Prior preservation (DreamBooth's remedy for language drift): ``count`` stills of what the model already
    makes — one frame of its own video for each of ``prompts`` (cycled), captioned with the prompt — appended to
    ``manifest``; returns how many."""
    if count <= 0:
        return 0
    chosen = [prompts[i % len(prompts)] for i in range(count)]
    videos = sample(pipe, chosen, BUDGET, seed=1000)
    rows = []
    for i, (video, prompt) in enumerate(zip(videos, chosen)):
        name = f"prior_{i:03d}.png"
        Image.fromarray(video[i % video.shape[0]]).save(manifest.parent / name)
        rows.append(f"{name},{prompt}")
    manifest.write_text(manifest.read_text() + "\n".join(rows) + "\n")
    return len(rows)


def part_lora(qs: Path, work: Path, steps: int, detector, heads, log, gifs, colour: str = "orange",
              prior: int = 0, overrides: tuple[str, ...] = (), still_caption: str = STILL_CAPTION,
              preserve: float | None = None, eval_seeds: int = 1) -> dict:
    base_run = qs / "latte"
    budget = replace(BUDGET, lora_steps=steps, eval_seeds=eval_seeds, colour=colour)
    if preserve is not None:  # the recipe's self-distillation weight (train.preservation; 0 = off)
        overrides = (f"train.preservation.weight={preserve}", *overrides)
    prompts = training_prompts(spec_of(base_run))
    def add(manifest: Path) -> int:
        return add_prior_stills(manifest, LattePipeline.from_run(base_run), prompts, prior)

    res = personalise(qs, work, detector, heads, budget, log, gifs, overrides, still_caption, add if prior else None)
    res.pop("adapter_path")
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qs", required=True, help="a `latte quickstart` output folder (latte/, vae/, classifier/)")
    parser.add_argument("--work", required=True, help="scratch folder for the fine-tuned runs and stills")
    parser.add_argument("--parts", default="fc,lora")
    parser.add_argument("--fc-steps", type=int, default=600)
    parser.add_argument("--preserve-steps", type=int, default=0,
                        help="then steps with train.preservation toward the base model's text-to-video (0 = none)")
    parser.add_argument("--decoder-steps", type=int, default=0,
                        help="decoder-only fine-tune of the quickstart autoencoder on the same clips (0 = none; "
                             "needs --preserve-steps to be used: the preserved run records it)")
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
    if args.decoder_steps and not args.preserve_steps:
        parser.error("--decoder-steps: the decoder is recorded by the --preserve-steps run; give both")
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
                                                args.i2v_videos, save("frame_conditioning"), args.motion,
                                                args.preserve_steps, args.decoder_steps)
    if "lora" in args.parts:
        results["personalisation"] = part_lora(qs, work, args.lora_steps, detector, meta["heads"], log, gifs,
                                               args.colour, args.prior, tuple(args.lora_set), args.still_caption,
                                               args.preserve, args.eval_seeds)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
