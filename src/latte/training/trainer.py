"""The training loop of ``latte train``.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` videos on every rank:

1. latents: read from the batch (latent cache / in-memory tensors) or encoded on the fly by the autoencoder;
2. per-sample timestep, noise and condition dropout drawn from ``(seed, step, dataset index)``
   (:mod:`latte.training.randomness`), so accumulation and DDP reproduce the single-process result;
3. ``loss = mean(mse + vb) / grad_accum`` under the configured precision, backward (DDP gradient sync only on
   the last micro-batch);
4. grad-norm (clip from ``start_clip_step``), non-finite guard, AdamW step with the scheduled lr, EMA update;
5. logging, checkpoints, validation; SIGINT/SIGTERM stop after the current step with a checkpoint.

``train(config, dataset=...)`` is the Python entry point; ``latte train`` calls it.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from latte.config import ConfigError, to_dict
from latte.training import checkpoint as ckpt
from latte.training.config import RunConfig, save_run_config
from latte.training.data_order import DataPosition, SeededItems, ShardedBatchSampler, batches_per_epoch, collate_items
from latte.training.distributed import (all_gather_objects, all_reduce_mean, barrier, cleanup_distributed,
                                        setup_distributed)
from latte.training.ema import create_ema, update_ema
from latte.training.guard import NonFiniteError, NonFiniteGuard
from latte.training.randomness import (capture_rng_state, mix_seed, per_sample_draws, restore_rng_state,
                                      seed_everything)
from latte.training.schedules import learning_rate
from latte.training.signals import GracefulStop

log = logging.getLogger("latte.train")

_AUTOCAST = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    step: int
    run_dir: Path
    last_checkpoint: Optional[Path]
    stopped_by: str  # "max_steps" | "SIGINT" | "SIGTERM"


class Trainer:
    """Builds everything a run needs from a :class:`RunConfig`; :meth:`fit` runs the loop."""

    def __init__(self, config: RunConfig, dataset: Optional[Dataset] = None, resume: Optional[str] = None,
                 device: Optional[str] = None, on_step_end: Optional[Callable[["Trainer"], None]] = None,
                 progress: bool = True):
        from latte.diffusion import diffusion_from_config
        from latte.models.latte import Latte

        self.config, tc = config, config.train
        self.train_cfg = tc
        self._early_messages: list[str] = []  # logged before log.txt exists; written to it when it does
        self.on_step_end = on_step_end
        self.progress = progress  # False: no progress bar (log lines, log.txt and TensorBoard are unchanged)
        self.dist = setup_distributed(device)
        self.device = self.dist.device
        self.run_dir = Path(tc.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self._configure_backends()

        seed_everything(tc.seed)  # identical initial weights on every rank (FSDP does not broadcast them)
        self.model = Latte(config.model)
        if tc.init_from and resume is None:
            from latte.training.init_from import init_model_from

            self._info(init_model_from(self.model, tc.init_from, tc.init_temporal_from_spatial).summary())
        self.model.to(self.device)
        self.ema = create_ema(self.model)
        self.diffusion = diffusion_from_config(config.diffusion, config.model.learn_sigma)

        self.dataset = dataset if dataset is not None else self._build_dataset()
        if batches_per_epoch(len(self.dataset), tc.batch_size, self.dist.world_size) < 1:
            raise ConfigError(f"train.batch_size: the dataset has {len(self.dataset)} items, fewer than one batch "
                              f"of {tc.batch_size} per rank on {self.dist.world_size} rank(s)")
        self._autoencoder = None
        self._text_encoder = None
        if hasattr(self.dataset, "check_autoencoder"):  # latents cached by another VAE (same path) are refused
            self.dataset.check_autoencoder(self.autoencoder)
        self._batch_checked = False
        self._caption_memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        self.step = 0
        self.position = DataPosition()
        self.guard = NonFiniteGuard(tc.max_nonfinite)
        resume_dir = self._resolve_resume(resume)
        if resume_dir is not None:  # weights before wrapping/sharding, optimizer state after
            self._load_weights(resume_dir)
        self.forward_model = self._wrap_model()
        fused = self.device.type == "cuda" and tc.distributed != "fsdp"
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, betas=tuple(tc.betas),
                                           weight_decay=tc.weight_decay, eps=tc.eps,
                                           **({"fused": True} if fused else {}))
        self.scaler = (torch.amp.GradScaler(self.device.type, init_scale=tc.loss_scale_init,
                                            growth_interval=tc.loss_scale_window)
                       if tc.precision == "fp16" else None)
        if resume_dir is not None:
            self._load_train_state(resume_dir)
        if resume_dir is None:
            seed_everything(tc.seed + self.dist.rank)
        self._writer = None
        self._wandb = None
        self._pbar = None
        self._window: dict = {}
        self.last_stats: Optional[dict] = None

    # ------------------------------------------------------------------------------------------------ set-up
    def _configure_backends(self) -> None:
        tc = self.train_cfg
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tc.tf32
            torch.backends.cudnn.allow_tf32 = tc.tf32
        if tc.deterministic:
            import os

            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

    def _build_dataset(self) -> Dataset:
        from latte.data import build_dataset

        return build_dataset(self.config, split="train", progress=self.dist.is_main)

    def _wrap_model(self) -> torch.nn.Module:
        tc, model = self.train_cfg, self.model
        if self.dist.enabled and tc.distributed == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=_AUTOCAST[tc.precision]) if tc.precision == "bf16" else None
            kwargs = {"mp_policy": mp} if mp else {}
            for block in model.blocks:
                fully_shard(block, **kwargs)
            fully_shard(model, **kwargs)
        forward = torch.compile(model) if tc.compile else model
        if self.dist.enabled and tc.distributed == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(forward, device_ids=ids)
        return forward

    @property
    def autoencoder(self):
        if self._autoencoder is None:
            from latte.encoders import build_autoencoder

            self.config.autoencoder.validate()
            self._autoencoder = build_autoencoder(self.config.autoencoder, device=self.device)
        return self._autoencoder

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from latte.encoders import build_text_encoder

            encoder = build_text_encoder(self.config.text_encoder, device=self.device)
            if encoder.dim != self.config.model.text_dim:
                raise ConfigError(f"model.text_dim ({self.config.model.text_dim}) must equal the text encoder's "
                                  f"feature size ({encoder.dim}, text_encoder.kind {self.config.text_encoder.kind})")
            self._text_encoder = encoder
        return self._text_encoder

    # -------------------------------------------------------------------------------------------- one step
    def _latents(self, batch: dict, keys: list[int]) -> torch.Tensor:
        """``(B, C, F[+K], h, w)`` float32 latents of a micro-batch."""
        if "latents" in batch:
            return batch["latents"].to(self.device, torch.float32)
        video = batch["video"].to(self.device)
        encode = self.autoencoder.encode
        keyed = "generator" in inspect.signature(encode).parameters
        out = []
        with torch.no_grad():
            for i, key in enumerate(keys):  # one keyed generator per sample: posterior samples are reproducible
                kwargs = {}
                if keyed:
                    seed = mix_seed(self.train_cfg.seed, self.step, key, 1)
                    kwargs["generator"] = torch.Generator(device=self.device).manual_seed(seed)
                out.append(encode(video[i:i + 1], **kwargs))
        return torch.cat(out).float()

    def _check_batch(self, batch: dict, x0: torch.Tensor) -> None:
        """First batch only: the data must fit the model (channels, size, frames, labels/captions)."""
        cfg, k = self.config.model, self.train_cfg.num_images
        expected = (cfg.in_channels, cfg.num_frames + k, cfg.input_size, cfg.input_size)
        if tuple(x0.shape[1:]) != expected:
            raise ConfigError(
                f"the data gives latents (C, F, h, w) = {tuple(x0.shape[1:])} but the model expects {expected} "
                f"(model.in_channels, model.num_frames + train.num_images, model.input_size x2); check "
                "data.num_frames, data.image_size and the autoencoder's downsampling/latent channels")
        needs = {"class": ("y", "class labels (data.kind classes or synthetic)"),
                 "text": ("caption", "captions (data.kind captions or synthetic)")}.get(cfg.conditioning)
        if needs and needs[0] not in batch and not (cfg.conditioning == "text" and "text" in batch):
            raise ConfigError(f"model.conditioning '{cfg.conditioning}' needs {needs[1]}; the dataset items have "
                              f"only {', '.join(sorted(batch))}")
        self._batch_checked = True

    def _condition(self, batch: dict, drop: torch.Tensor) -> dict:
        """Model keyword arguments: class labels / text features (with CFG dropout) and joint-image inputs."""
        cfg, kwargs = self.config.model, {}
        if self.train_cfg.num_images:
            kwargs["num_images"] = self.train_cfg.num_images
        if cfg.conditioning == "class":
            kwargs["y"] = batch["y"].to(self.device)
            kwargs["force_drop_ids"] = (drop < cfg.class_dropout_prob).long()
            if "y_images" in batch:
                kwargs["y_images"] = batch["y_images"].to(self.device)
        elif cfg.conditioning == "text":
            dropped = (drop < self.train_cfg.text_dropout_prob).tolist()
            kwargs["text"], kwargs["text_mask"] = self._text_features(batch, "caption", "text", dropped)
            if "image_captions" in batch or "image_text" in batch:
                images_text, images_mask = self._text_features(batch, "image_captions", "image_text", dropped)
                kwargs["image_text"], kwargs["image_text_mask"] = images_text, images_mask
        return kwargs

    def _text_features(self, batch: dict, caption_key: str, feature_key: str, dropped: list[bool]):
        """Text features of the captions (or cached features), dropped samples replaced by the empty caption."""
        if feature_key in batch:  # precomputed (latent cache)
            hidden = batch[feature_key].to(self.device, torch.float32)
            mask = batch[f"{feature_key}_mask"].to(self.device).bool()
            null_hidden, null_mask = self.text_encoder.null_embedding()
            length = hidden.shape[-2]
            for i, d in enumerate(dropped):
                if d:
                    hidden[i] = null_hidden[0, :length].to(hidden)
                    mask[i] = null_mask[0, :length].to(mask)
            return hidden, mask
        captions = batch[caption_key]
        if captions and isinstance(captions[0], list):  # per-sample lists of image captions (B, K)
            flat = ["" if d else c for caps, d in zip(captions, dropped) for c in caps]
            hidden, mask = self._encode_captions(flat)
            k = len(captions[0])
            return hidden.reshape(len(captions), k, *hidden.shape[1:]), mask.reshape(len(captions), k, -1)
        return self._encode_captions(["" if d else c for c, d in zip(captions, dropped)])

    def _encode_captions(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text-encoder features, memoised per caption (up to ~256 MB) when features do not depend on the batch."""
        encoder = self.text_encoder
        if getattr(encoder, "truncate_to_valid", False):  # the length depends on the batch: no memo
            return encoder.encode(captions)
        memo = self._caption_memo
        missing = list(dict.fromkeys(c for c in captions if c not in memo))
        if missing:
            hidden, mask = encoder.encode(missing)
            per_entry = hidden[0].numel() * hidden.element_size()
            for c, h, m in zip(missing, hidden, mask):
                if len(memo) * per_entry < 256 * 2**20:
                    memo[c] = (h, m)
            if any(c not in memo for c in captions):  # memo full: encode this batch directly
                return encoder.encode(captions)
        return torch.stack([memo[c][0] for c in captions]), torch.stack([memo[c][1] for c in captions])

    def _model_fn(self, x, t, **kwargs):
        """The model under autocast, returning float32 (the diffusion losses are computed in float32)."""
        dtype = _AUTOCAST[self.train_cfg.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self.forward_model(x, t, **kwargs).float()

    def _micro_step(self, batch: dict, last: bool) -> torch.Tensor:
        """Forward + backward of one micro-batch; returns the detached per-term means ``[loss, mse, vb]``."""
        keys = batch["index"].tolist()
        x0 = self._latents(batch, keys)
        if not self._batch_checked:
            self._check_batch(batch, x0)
        t, noise, drop = per_sample_draws(keys, self.train_cfg.seed, self.step, self.diffusion.num_timesteps,
                                          tuple(x0.shape[1:]), self.device)
        kwargs = self._condition(batch, drop)
        sync = contextlib.nullcontext()
        if not last and hasattr(self.forward_model, "no_sync"):
            sync = self.forward_model.no_sync()
        elif hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2
            self.model.set_requires_gradient_sync(last)
        with sync:
            terms = self.diffusion.training_losses(self._model_fn, x0, t, model_kwargs=kwargs, noise=noise)
            loss = terms["loss"].mean() / self.train_cfg.grad_accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        return torch.stack([terms["loss"].mean(), terms["mse"].mean(), terms["vb"].mean()]).detach()

    def _grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients, clipping them from ``start_clip_step`` on (official)."""
        tc = self.train_cfg
        clip = tc.clip_grad_norm if (tc.clip_grad_norm is not None and self.step >= tc.start_clip_step) else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def train_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches; returns the logged scalars."""
        tc = self.train_cfg
        self.model.train()
        terms = torch.zeros(3, device=self.device)
        for i, batch in enumerate(micro_batches):
            terms += self._micro_step(batch, last=i == len(micro_batches) - 1)
        terms /= len(micro_batches)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._grad_norm()
        stats = torch.cat([terms, grad_norm.reshape(1).float().to(self.device)])
        loss, mse, vb, _ = all_reduce_mean(stats).tolist()
        norm = float(grad_norm)
        lr = learning_rate(self.step, lr=tc.lr, schedule=tc.lr_schedule, warmup_steps=tc.warmup_steps,
                           max_steps=tc.max_steps, min_lr=tc.min_lr)
        # fp16: an overflowing gradient is the loss scaler's business (it skips and lowers the scale);
        # only a non-finite loss counts against max_nonfinite there.
        overflow = self.scaler is not None and math.isfinite(loss) and not math.isfinite(norm)
        applied = self.guard.check(self.step, loss, 0.0 if overflow else norm) and not overflow
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if applied:
            if self.scaler:
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
            update_ema(self.ema, self.model, tc.ema_decay)
        else:
            self._info(f"step {self.step}: skipped ({'fp16 overflow' if overflow else 'non-finite'}: "
                       f"loss={loss:.4g}, grad norm={norm:.4g})")
        if self.scaler:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        out = {"loss": loss, "mse": mse, "vb": vb, "grad_norm": norm, "lr": lr, "skipped": float(not applied)}
        if self.scaler:
            out["loss_scale"] = float(self.scaler.get_scale())
        return out

    # ---------------------------------------------------------------------------------------------- data
    def _micro_batches(self):
        """Endless stream of this rank's batches, advancing ``self.position``."""
        tc = self.train_cfg
        items = SeededItems(self.dataset, tc.seed)
        while True:
            sampler = ShardedBatchSampler(len(self.dataset), tc.batch_size, rank=self.dist.rank,
                                          world_size=self.dist.world_size, seed=tc.seed, epoch=self.position.epoch,
                                          start_batch=self.position.batch)
            loader = DataLoader(items, batch_sampler=sampler, num_workers=tc.num_workers, collate_fn=collate_items,
                                pin_memory=self.device.type == "cuda")
            for batch in loader:
                self.position.batch += 1
                yield batch
            self.position = DataPosition(epoch=self.position.epoch + 1, batch=0)

    # --------------------------------------------------------------------------------------- checkpoints
    def _resolve_resume(self, resume: Optional[str]) -> Optional[Path]:
        if resume is None:
            if ckpt.list_checkpoints(self.ckpt_root):
                raise ConfigError(f"train.run_dir: {self.run_dir} already holds checkpoints; continue it with "
                                  "--resume, or choose a new train.run_dir")
            return None
        found = ckpt.resolve_checkpoint(resume or self.run_dir)
        import yaml

        saved = yaml.safe_load((found / "run_config.yaml").read_text())
        if saved.get("model") != to_dict(self.config.model):
            diff = [k for k in set(saved.get("model", {})) | set(to_dict(self.config.model))
                    if saved.get("model", {}).get(k) != getattr(self.config.model, k, None)]
            raise ConfigError(f"--resume {found}: the checkpoint's model section differs from this config in "
                              f"model.{', model.'.join(sorted(diff))}")
        return found

    def _load_weights(self, ckpt_dir: Path) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(ckpt_dir / "model" / "model.safetensors")))
        self.ema.load_state_dict(load_file(str(ckpt_dir / "ema" / "model.safetensors")))
        self.model.to(self.device)
        self.ema.to(self.device)

    def _load_train_state(self, ckpt_dir: Path) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        state = ckpt.load_train_state(ckpt_dir)
        set_optimizer_state_dict(self.model, self.optimizer, optim_state_dict=state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
        if self.scaler and state["grad_scaler"]:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step = int(state["step"])
        self.guard.load_state_dict(state["guard"])
        tc, world = self.train_cfg, self.dist.world_size
        same_layout = (state["world_size"], state["batch_size"]) == (world, tc.batch_size)
        if same_layout:
            self.position = DataPosition(**state["data"])
            restore_rng_state(state["rng"][self.dist.rank])
        else:  # continue after the same number of samples; exact resume needs the same layout
            seen = state["data"]["batch"] * state["batch_size"] * state["world_size"]
            self.position = DataPosition(epoch=state["data"]["epoch"], batch=seen // (tc.batch_size * world))
            seed_everything(tc.seed + self.dist.rank + self.step)
            self._info(f"resuming with world size {world} x batch {tc.batch_size} (checkpoint: "
                       f"{state['world_size']} x {state['batch_size']}): continuing, but not bit-exactly")
        self._info(f"resumed from {ckpt_dir} at step {self.step}")

    def save_checkpoint(self) -> Path:
        """Write ``step_XXXXXXX`` (all ranks take part: FSDP gathers the full weights; rank 0 writes)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(self.model, options=options)
        optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        rng = all_gather_objects(capture_rng_state())
        path = self.ckpt_root / ckpt.checkpoint_name(self.step)
        if self.dist.is_main:
            for name, state in (("model", model_state), ("ema", self.ema.state_dict())):
                bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
                if bad:
                    raise NonFiniteError(f"refusing to write checkpoint step {self.step}: {name} weights "
                                         f"{', '.join(bad[:5])} are not finite")
            train_state = {
                "format": 1, "step": self.step, "optimizer": optim_state,
                "grad_scaler": self.scaler.state_dict() if self.scaler else {},
                "rng": rng, "data": self.position.state_dict(), "guard": self.guard.state_dict(),
                "world_size": self.dist.world_size, "batch_size": self.train_cfg.batch_size,
                "grad_accum": self.train_cfg.grad_accum,
            }

            def fill(tmp: Path) -> None:
                self.model.save_pretrained(tmp / "model", state_dict=model_state)
                self.ema.save_pretrained(tmp / "ema")
                save_run_config(self.config, tmp / "run_config.yaml")
                torch.save(train_state, tmp / ckpt.TRAIN_STATE)

            path = ckpt.write_checkpoint(self.ckpt_root, self.step, fill)
            ckpt.prune_checkpoints(self.ckpt_root, self.train_cfg.keep_last, self.train_cfg.keep_every)
            self._info(f"checkpoint {path}")
        barrier()
        return path

    # ------------------------------------------------------------------------------------------- logging
    def _info(self, message: str) -> None:
        """A message for the user (rank 0): progress-bar-safe console line + ``log.txt``."""
        if not self.dist.is_main:
            return
        if self._pbar_active():
            log.info(message)
            self._pbar.write(message)
        else:
            self._early_messages.append(message)
            print(message, flush=True)

    def _pbar_active(self) -> bool:
        return getattr(self, "_pbar", None) is not None

    def _start_logging(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.run_dir / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # the progress bar prints; the file keeps everything
        for message in self._early_messages:
            log.info(message)
        self._early_messages.clear()
        self._log_handler = handler
        save_run_config(self.config, self.run_dir / "run_config.yaml")
        class_names = getattr(self.dataset, "class_names", None)
        if class_names and self.config.model.conditioning == "class":  # sampling resolves --class NAME with it
            (self.run_dir / "class_names.json").write_text(json.dumps(list(class_names), indent=1) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
        if self.config.wandb.enabled:
            self._wandb = _start_wandb(self.config, self.run_dir)
        from tqdm.auto import tqdm

        self._pbar = tqdm(total=self.train_cfg.max_steps, initial=self.step, desc="train", unit="step",
                          dynamic_ncols=True, disable=not self.progress)

    def _stop_logging(self) -> None:
        if not self.dist.is_main:
            return
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.finish()
        log.removeHandler(self._log_handler)
        self._log_handler.close()

    def _log_scalars(self, stats: dict, frames: int, seconds: float) -> None:
        """Progress bar every step; log line, TensorBoard and W&B every ``log_every`` steps (window means)."""
        self.last_stats = stats
        window = self._window
        for k, v in stats.items():
            window[k] = window.get(k, 0.0) + v
        window["_steps"] = window.get("_steps", 0) + 1
        window["_frames"] = window.get("_frames", 0) + frames
        window["_seconds"] = window.get("_seconds", 0.0) + seconds
        if not self.dist.is_main:
            return
        self._pbar.set_postfix(loss=f"{stats['loss']:.4f}", fps=f"{frames / max(seconds, 1e-9):.0f}", refresh=False)
        if self.step % self.train_cfg.log_every and self.step != self.train_cfg.max_steps:
            return
        n = window.pop("_steps")
        scalars = {k: v / n for k, v in window.items() if not k.startswith("_")}
        scalars["skipped"] *= n  # a count over the window, not a mean
        scalars["frames_per_s"] = window["_frames"] / max(window["_seconds"], 1e-9)
        scalars["memory_gb"] = _memory_gb(self.device)
        self._window = {}
        for name, value in scalars.items():
            self._writer.add_scalar(f"train/{name}", value, self.step)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in scalars.items()}, step=self.step)
        self._info(f"step {self.step}/{self.train_cfg.max_steps} " + " ".join(
            f"{k} {v:.4g}" for k, v in scalars.items()))

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        tc = self.train_cfg
        self._start_logging()
        batches = self._micro_batches()
        last_ckpt, stopped_by = None, "max_steps"
        frames = None
        self._window = {}
        try:
            with GracefulStop() as stop:
                while self.step < tc.max_steps:
                    start = time.perf_counter()
                    micro = [next(batches) for _ in range(tc.grad_accum)]
                    stats = self.train_step(micro)
                    if frames is None:
                        key = "latents" if "latents" in micro[0] else "video"
                        frames = micro[0][key].shape[0] * micro[0][key].shape[2] * tc.grad_accum * self.dist.world_size
                    if self._pbar is not None:
                        self._pbar.update(1)
                    self._log_scalars(stats, frames, time.perf_counter() - start)
                    stop_now = bool(all_reduce_mean(torch.tensor([float(stop.requested is not None)],
                                                                 device=self.device)).item() > 0)
                    if self.step % tc.ckpt_every == 0 or self.step == tc.max_steps or stop_now:
                        last_ckpt = self.save_checkpoint()
                    if self.config.validation.every and self.step % self.config.validation.every == 0:
                        self._validate()
                    if self.on_step_end is not None:
                        self.on_step_end(self)
                    if stop_now:
                        stopped_by = stop.requested or "signal"
                        self._info(f"stopped by {stopped_by} after step {self.step}; resume with "
                                   f"`latte train CONFIG --resume {self.run_dir}`")
                        break
        finally:
            self._stop_logging()
        return TrainResult(step=self.step, run_dir=self.run_dir, last_checkpoint=last_ckpt, stopped_by=stopped_by)

    def _validate(self) -> None:
        if self.dist.is_main:
            from latte.training.validation import run_validation

            paths = run_validation(self, self.step)
            self._info(f"validation samples: {', '.join(str(p) for p in paths)}")
        barrier()


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _start_wandb(config: RunConfig, run_dir: Path):
    try:
        import wandb
    except ImportError:
        raise ConfigError("wandb.enabled: the wandb package is not installed (pip install wandb)") from None
    w = config.wandb
    return wandb.init(project=w.project, entity=w.entity, name=w.run_name or run_dir.name, mode=w.mode,
                      dir=str(run_dir), config=to_dict(config), resume="allow")


def train(config: RunConfig, dataset: Optional[Dataset] = None, resume: Optional[str] = None,
          device: Optional[str] = None, on_step_end: Optional[Callable[[Trainer], None]] = None,
          progress: bool = True) -> TrainResult:
    """Train a Latte model as ``config`` says; ``resume``: a run dir or checkpoint ('' = ``train.run_dir``).

    ``dataset``: any map-style dataset of dicts (``latents (C, F, h, w)`` or ``video (3, F, H, W)``, plus ``y``
    / ``caption``); None builds it from ``config.data``. ``progress=False`` hides the progress bar.
    """
    trainer = Trainer(config, dataset=dataset, resume=resume, device=device, on_step_end=on_step_end,
                      progress=progress)
    try:
        return trainer.fit()
    finally:
        cleanup_distributed()
