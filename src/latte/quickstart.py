"""``latte quickstart``: train and sample a real text-to-video Latte on a laptop CPU, offline, in minutes.

Stages (each is skipped when its marker ``OUT/stages/<name>.json`` exists, and the two trainers resume from
their last checkpoint, so an interrupted quickstart continues where it stopped):

1. ``data``        the procedural moving-shapes dataset (shipped config ``quickstart/data``): a preview GIF;
2. ``vae``         a small AutoencoderKL trained on its frames (``latte train-vae``);
3. ``classifier``  the evaluator: a 3-D conv classifier of shape / colour / direction (``latte train-classifier``);
4. ``cache``       VAE latents + MiniLM caption features of every training clip (``latte cache``);
5. ``train``       a small text-conditioned Latte with CFG caption dropout and EMA (``latte train``);
6. ``sample``      videos for training and held-out attribute combinations (mp4, GIF, PNG grids + sidecars);
7. ``eval``        attribute accuracy (per clip, and in every frame: colour / shape flicker), synthetic FVD vs
                   the real-vs-real baseline, temporal consistency;
8. ``report``      ``OUT/report.md`` with the numbers, the GIFs and the loss curve.

The resolved config of every stage is written to ``OUT/configs/`` with the equivalent ``latte`` command.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from latte.config import SHIPPED_CONFIGS, ConfigError
from latte.io import atomic_write_text, atomic_write_yaml, load_yaml_mapping

CONFIG_DIR = SHIPPED_CONFIGS / "quickstart"
SHOWCASE_PER_SET = 4  # showcase prompts per set (training / held-out combinations)


@dataclass
class Budget:
    """How much work each stage does; ``smoke`` is the shortened path of the end-to-end test."""

    vae_steps: Optional[int] = None  # None: the config's value
    classifier_steps: Optional[int] = None
    classifier_videos: Optional[int] = None
    train_videos: Optional[int] = None  # clips in the latent cache
    train_steps: Optional[int] = None
    samples_per_combo: int = 6  # generated videos per training combination (FVD + accuracy)
    heldout_per_combo: int = 8  # generated videos per held-out combination
    sampling_steps: int = 25  # 50 gave the same accuracy (measured)
    cfg_scale: float = 2.0  # measured: guidance 2 / 3 / 4.5 → 90 / 90 / 83 % of training-combination videos
    # right in every frame at synthetic FVD 5.4 / 8.7 / 11.9 (real-vs-real 11.2), held-out pairs equal


BUDGETS = {
    "full": Budget(),
    "smoke": Budget(vae_steps=20, classifier_steps=20, classifier_videos=64, train_videos=64, train_steps=10,
                    samples_per_combo=1, heldout_per_combo=1, sampling_steps=4),
}


def _load(name: str) -> dict:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"quickstart config not found: {path} (a broken installation: it ships with the package)")
    return load_yaml_mapping(path, "quickstart config")


class StagedRun:
    """Resumable stages: ``stage_<name>()`` runs for each name of ``STAGES`` in order; its result dict, with the
    seconds it took and the load average before and after, is written to ``OUT/stages/<MARKER><name>.json``,
    and a stage whose file exists is skipped. Subclasses set ``STAGES``, ``TITLES``, ``paths["stages"]`` and
    ``log``."""

    STAGES: tuple[str, ...] = ()
    TITLES: dict[str, str] = {}
    MARKER = ""  # file-name prefix of the stage results (two runs sharing one OUT/stages)
    paths: dict[str, Path]
    log: Callable[[str], None]

    def stage_result(self, name: str) -> Optional[dict]:
        path = self.paths["stages"] / f"{self.MARKER}{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def run(self) -> dict:
        start = time.time()
        tag = self.MARKER.replace("_", " ")
        for i, name in enumerate(self.STAGES, 1):
            done = self.stage_result(name)
            header = f"[{tag}{i}/{len(self.STAGES)}] {self.TITLES[name]}"
            if done is not None:
                self.log(f"{header}: done earlier ({done['seconds']:.0f} s), skipped")
                continue
            self.log(f"{header} ...")
            t0, load0 = time.time(), os.getloadavg()[0]
            result = getattr(self, f"stage_{name}")()
            result.update(seconds=time.time() - t0, load_average=[load0, os.getloadavg()[0]])
            self.paths["stages"].mkdir(parents=True, exist_ok=True)  # written whole or not at all: a marker
            atomic_write_text(self.paths["stages"] / f"{self.MARKER}{name}.json",  # means the stage finished
                              json.dumps(result, indent=2, default=str))
            self.log(f"{header}: finished in {result['seconds']:.0f} s (total {time.time() - start:.0f} s)")
        return {name: self.stage_result(name) for name in self.STAGES}


class Quickstart(StagedRun):
    """Runs the stages into ``out``; see the module docstring."""

    def __init__(self, out: str | Path = "quickstart_out", budget: str = "full", progress: bool = True,
                 log: Callable[[str], None] = print):
        self.out = Path(out).resolve()
        self.budget = BUDGETS[budget]
        self.progress = progress
        self.log = log
        self.data = _load("data")
        self.paths = {name: self.out / name for name in
                      ("vae", "classifier", "cache", "latte", "samples", "eval", "configs", "stages")}

    # -- configs -------------------------------------------------------------------------------------------
    def _write_config(self, name: str, data: dict, command: str) -> Path:
        self.paths["configs"].mkdir(parents=True, exist_ok=True)
        path = self.paths["configs"] / f"{name}.yaml"
        header = f"# equivalent command: {command.format(config=path)}\n"
        atomic_write_yaml(path, data, header)
        return path

    def vae_config(self) -> dict:
        cfg = _load("vae")
        cfg["run_dir"] = str(self.paths["vae"])
        data = copy.deepcopy(self.data)
        # the autoencoder sees no captions: like the evaluator (and SD's VAE), it learns every combination's
        # pixels; only the text-to-video model never sees the held-out colour+shape pairs
        data["synthetic"].pop("heldout", None)
        cfg["data"]["dataset"] = data
        if self.budget.vae_steps:
            cfg["max_steps"] = self.budget.vae_steps
            cfg["ckpt_every"] = self.budget.vae_steps
        return cfg

    def classifier_config(self) -> dict:
        cfg = _load("classifier")
        synthetic = {k: v for k, v in self.data["synthetic"].items()
                     if k not in ("heldout", "num_videos", "heldout_videos")}  # the evaluator sees every combination
        cfg.update(synthetic=synthetic, num_frames=self.data["num_frames"], image_size=self.data["image_size"])
        if self.budget.classifier_steps:
            cfg.update(max_steps=self.budget.classifier_steps, num_videos=self.budget.classifier_videos, val_videos=32)
        return cfg

    def run_config(self) -> dict:
        cfg = _load("latte")
        data = copy.deepcopy(self.data)
        data["cache_dir"] = str(self.paths["cache"])
        if self.budget.train_videos:
            data["synthetic"]["num_videos"] = self.budget.train_videos
        cfg["data"] = data
        cfg["autoencoder"]["path"] = str(self.paths["vae"] / "vae")
        cfg["train"]["run_dir"] = str(self.paths["latte"])
        if self.budget.train_steps:
            cfg["train"].update(max_steps=self.budget.train_steps, warmup_steps=2, ckpt_every=self.budget.train_steps,
                                log_every=5)
        return cfg

    def cache_config(self) -> dict:
        run = self.run_config()
        return {"data": run["data"], "autoencoder": run["autoencoder"], "text_encoder": run["text_encoder"],
                "cache": {"views": 1, "num_workers": 0, "batch_size": 16, "shard_size": 512, "dtype": "float32"}}

    def _synthetic(self):
        """The data's ``synthetic`` section as a validated :class:`latte.data.config.SyntheticConfig`."""
        from latte.config import from_dict
        from latte.data.config import SyntheticConfig

        return from_dict(SyntheticConfig, self.data["synthetic"], prefix="data.synthetic")

    # -- stages --------------------------------------------------------------------------------------------
    def stage_data(self) -> dict:
        from latte.data import SyntheticDataset, write_gif

        syn = self._synthetic()
        spec = syn.spec()
        combos = spec.combinations()
        heldout = [c for c in combos if spec.is_heldout(c)]
        ds = SyntheticDataset(spec, 16, self.data["num_frames"], self.data["image_size"], seed=syn.seed)
        clips = np.stack([ds.render(i) for i in range(16)])  # (16, F, S, S, 3)
        grid = clips.reshape(4, 4, *clips.shape[1:]).transpose(2, 0, 3, 1, 4, 5)
        grid = grid.reshape(clips.shape[1], 4 * clips.shape[2], 4 * clips.shape[3], 3)
        self.out.mkdir(parents=True, exist_ok=True)
        write_gif(self.out / "data_preview.gif", np.ascontiguousarray(grid), fps=4)
        return {"combinations": len(combos), "heldout_combinations": len(heldout),
                "train_clips": syn.num_videos, "preview": "data_preview.gif",
                "heldout": [_caption(c) for c in heldout]}

    def stage_vae(self) -> dict:
        from latte.config import from_dict
        from latte.encoders.vae_training import VAETrainConfig
        from latte.training.tasks.vae import train_vae

        data = self.vae_config()
        self._write_config("vae", data, "latte train-vae {config}")
        cfg = from_dict(VAETrainConfig, data)
        resume = cfg.run_dir if (Path(cfg.run_dir) / "checkpoints").is_dir() else None
        report = train_vae(cfg, resume=resume, progress=self.progress)
        return {k: report[k] for k in report if isinstance(report[k], (int, float, str))}

    def stage_classifier(self) -> dict:
        from latte.config import from_dict
        from latte.metrics.synthetic import ClassifierTrainConfig, save_classifier
        from latte.training.tasks.classifier import train_classifier

        data = self.classifier_config()
        command = f"latte train-classifier --config {{config}} --out {self.paths['classifier']}"
        self._write_config("classifier", data, command)
        cfg = from_dict(ClassifierTrainConfig, data)
        model, metrics = train_classifier(cfg, progress=self.progress)
        save_classifier(model, cfg, metrics, self.paths["classifier"])
        return {"val_accuracy": metrics["val_accuracy"]}

    def stage_cache(self) -> dict:
        from latte.data.cache import CacheConfig, build_cache
        from latte.config import from_dict
        from latte.encoders import build_autoencoder, build_text_encoder

        data = self.cache_config()
        self._write_config("cache", data, "latte cache {config}")
        cfg = from_dict(CacheConfig, data)
        index = build_cache(cfg, build_autoencoder(cfg.autoencoder), build_text_encoder(cfg.text_encoder),
                            progress=self.progress)
        return {"index": str(index)}

    def stage_train(self) -> dict:
        from latte.config import from_dict
        from latte.training.config import RunConfig
        from latte.training.trainer import train

        data = self.run_config()
        path = self._write_config("latte", data, "latte train {config}")
        cfg = from_dict(RunConfig, data)
        resume = str(self.paths["latte"]) if (self.paths["latte"] / "checkpoints" / "latest").is_file() else None
        losses_path = self.paths["latte"] / "losses.jsonl"
        self.paths["latte"].mkdir(parents=True, exist_ok=True)

        def record(trainer) -> None:
            last = trainer.last_stats or {}
            if "loss" in last:
                with open(losses_path, "a") as f:
                    f.write(json.dumps({"step": trainer.step, **{k: float(v) for k, v in last.items()}}) + "\n")

        result = train(cfg, resume=resume, on_step_end=record, progress=self.progress)
        return {"step": result.step, "stopped_by": result.stopped_by, "checkpoint": str(result.last_checkpoint),
                "config": str(path)}

    def _prompt_sets(self) -> dict[str, list[str]]:
        spec = self._synthetic().spec()
        combos = spec.combinations()
        train = [_caption(c) for c in combos if not spec.is_heldout(c)]
        heldout = [_caption(c) for c in combos if spec.is_heldout(c)]
        return {"train": train * self.budget.samples_per_combo, "heldout": heldout * self.budget.heldout_per_combo}

    def stage_sample(self) -> dict:
        from latte.sampling.outputs import save_videos
        from latte.sampling.pipeline import LattePipeline

        pipe = LattePipeline.from_run(self.paths["latte"])
        b = self.budget
        summary = {}
        for name, prompts in self._prompt_sets().items():
            seed = 0 if name == "train" else 100_000
            output = pipe(prompts=prompts, seed=seed, sampler="ddim", steps=b.sampling_steps, cfg_scale=b.cfg_scale,
                          batch_size=32, progress=self.progress)
            save_videos(output, self.paths["samples"] / name, formats=("mp4",), fps=4)
            # the showcase: the first prompts of each set as GIFs and frame grids for the report
            picks = _first_of_each(prompts, SHOWCASE_PER_SET)
            show = type(output)(output.videos[picks], [output.records[i] for i in picks])
            save_videos(show, self.paths["samples"] / f"showcase_{name}", formats=("gif", "png-grid"), fps=4)
            summary[name] = {"videos": len(prompts), "prompts": len(set(prompts))}
        summary.update(sampler="ddim", steps=b.sampling_steps, cfg_scale=b.cfg_scale)
        return summary

    def stage_eval(self) -> dict:
        import torch

        from latte.data.synthetic import SyntheticDataset
        from latte.metrics.clips import tensor_videos
        from latte.metrics.evaluate import evaluate, make_settings
        from latte.metrics.synthetic import every_frame_check, load_classifier, read_video_folder, temporal_consistency

        syn = self._synthetic()
        frames = self.data["num_frames"]
        n_train = len(self._prompt_sets()["train"])
        # real clips: unseen placements of the training combinations (the generator's target distribution)
        real = SyntheticDataset(syn.spec(), 2 * n_train, frames, self.data["image_size"], seed=syn.seed, split="val")
        real_videos = torch.from_numpy(np.stack([real.render(i) for i in range(len(real))])).permute(0, 4, 1, 2, 3)
        settings = make_settings(
            metrics=["synthetic-fvd", "attribute-accuracy", "temporal"], num_real=2 * n_train, num_fake=n_train,
            num_frames=frames, real_stride=1, classifier_path=str(self.paths["classifier"]), progress=self.progress)
        # the synthetic metrics read clips at the evaluator's own size (the FVD presets' 256 px resize is for I3D)
        settings.resolution = None
        result = evaluate(settings, tensor_videos(real_videos), [str(self.paths["samples"] / "train")])
        settings_h = make_settings(metrics=["attribute-accuracy", "temporal"], num_fake=10**6, num_frames=frames,
                                   classifier_path=str(self.paths["classifier"]), progress=self.progress)
        settings_h.resolution = None
        held = evaluate(settings_h, None, [str(self.paths["samples"] / "heldout")])
        self.paths["eval"].mkdir(parents=True, exist_ok=True)
        (self.paths["eval"] / "train_combinations.json").write_text(json.dumps(result, indent=2, default=str))
        (self.paths["eval"] / "heldout_combinations.json").write_text(json.dumps(held, indent=2, default=str))
        # every frame on its own (colour and shape of the object), beside the clip classifier; the real clips
        # check the check itself (it must find them right in every frame)
        detector, classifier_meta = load_classifier(self.paths["classifier"])
        every_frame = {name: every_frame_check(*read_video_folder(self.paths["samples"] / name), detector,
                                               classifier_meta) for name in ("train", "heldout")}
        n_real = min(64, len(real))
        real_asked = [{"attributes": real.attributes(i)} for i in range(n_real)]
        every_frame["real"] = every_frame_check(real_videos[:n_real], real_asked, detector, classifier_meta)
        (self.paths["eval"] / "every_frame.json").write_text(json.dumps(every_frame, indent=2))
        m, mh = result["runs"][0]["metrics"], held["runs"][0]["metrics"]
        return {"accuracy_train": m["attribute_accuracy"], "accuracy_heldout": mh["attribute_accuracy"],
                "synthetic_fvd": m["synthetic_fvd"], "synthetic_fvd_real_baseline": m["synthetic_fvd_real_baseline"],
                "temporal_generated": m["temporal"], "temporal_real": temporal_consistency(real_videos[:n_train]),
                "every_frame": every_frame}

    def stage_report(self) -> dict:
        from latte.quickstart_report import write_report

        path = write_report(self)
        return {"report": str(path)}

    STAGES = ("data", "vae", "classifier", "cache", "train", "sample", "eval", "report")
    TITLES = {"data": "synthetic dataset", "vae": "train the VAE", "classifier": "train the evaluation classifier",
              "cache": "cache latents and caption features", "train": "train the text-to-video Latte",
              "sample": "sample videos", "eval": "evaluate", "report": "write the report"}


def _caption(combo: dict) -> str:
    from latte.data.synthetic import caption_for

    return caption_for(combo)


def _first_of_each(prompts: list[str], count: int) -> list[int]:
    """Indices of the first occurrence of the first ``count`` distinct prompts."""
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        if p not in seen and len(seen) < count:
            seen[p] = i
    return list(seen.values())

