"""The training engine: one loop for every model, knowing none of them.

A :class:`~latte.training.tasks.Task` builds the model and turns a batch into a loss; the engine does the rest.
One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` items on every rank:

1. batches: the task's dataset in the seeded, rank-sharded, resumable order of
   :class:`latte.data.loader.ResumableLoader` (or, for tasks that draw their own batches, ``task.draw_batch(step)``);
2. ``task.loss(model, batch, ctx)`` -> ``{"loss": scalar, ...}`` (the task draws per-sample randomness from
   ``ctx.step`` and runs the model under ``ctx.autocast()``); ``loss / grad_accum`` is back-propagated (DDP
   gradient sync only on the last micro-batch);
3. grad-norm (clipped from ``start_clip_step``), non-finite guard, AdamW step with the scheduled lr, EMA update;
4. logging (log line, ``log.txt``, TensorBoard, W&B, progress bar), checkpoints, validation; SIGINT/SIGTERM
   stop after the current step with a checkpoint.

Checkpoints (``RUN/checkpoints/step_XXXXXXX/``): ``<task.model_dir>/`` and ``ema/`` (written by the task),
the task's config file, ``train_state.pt`` (optimizer, grad scaler, step, RNG states of every rank, data
position, guard, task state; ``torch.load(weights_only=True)``-safe). ``train.run_dir: null`` keeps nothing on
disk (no logs, no checkpoints).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from latte.config import ConfigError
from latte.training import checkpoint as ckpt
from latte.data.loader import DataPosition, ResumableLoader, batches_per_epoch
from latte.io import atomic_write_text
from latte.seeding import seed_everything
from latte.training.distributed import (all_gather_objects, all_reduce_mean, barrier, cleanup_distributed,
                                        setup_distributed)
from latte.training.ema import create_ema, update_ema
from latte.training.guard import NonFiniteError, NonFiniteGuard
from latte.training.randomness import capture_rng_state, restore_rng_state
from latte.training.signals import GracefulStop
from latte.training.trainable import apply_trainable

log = logging.getLogger("latte.train")

AUTOCAST = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

__all__ = ["Engine", "StepContext", "TrainResult", "run", "AUTOCAST"]


@dataclass
class TrainResult:
    step: int
    run_dir: Optional[Path]
    last_checkpoint: Optional[Path]
    stopped_by: str  # "max_steps" | "SIGINT" | "SIGTERM"


@dataclass
class StepContext:
    """What a task's ``loss`` may use besides the model and the batch."""

    step: int  # the optimizer step being computed (0-based)
    seed: int  # train.seed
    device: torch.device
    precision: str  # float32 | bf16 | fp16

    def autocast(self):
        """The configured autocast (a no-op for float32); wrap the model's forward in it."""
        dtype = AUTOCAST[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)


class Engine:
    """Builds the model through ``task``, the optimizer and the run state from ``train`` (a
    :class:`~latte.training.config.TrainConfig`); :meth:`fit` runs the loop.

    ``wandb``: a :class:`~latte.training.config.WandbConfig` (or None); ``on_step_end(engine)`` is called after
    every optimizer step (after its checkpoint and validation); ``progress=False`` hides the progress bar.
    """

    def __init__(self, task, train, *, resume: Optional[str] = None, device: Optional[str] = None,
                 on_step_end: Optional[Callable[["Engine"], None]] = None, progress: bool = True, wandb=None):
        self.task, self.train_cfg = task, train
        tc = train
        self._early_messages: list[str] = []  # logged before log.txt exists; written to it when it does
        self.writer = None  # TensorBoard SummaryWriter while fitting (rank 0, with a run_dir)
        self.wandb_run = None
        self._pbar = None
        self._log_handler = None
        self._window: dict = {}
        self.last_stats: Optional[dict] = None
        self.last_healthy_checkpoint: Optional[Path] = None  # written (or resumed from) after an applied step
        self.on_step_end = on_step_end
        self.progress = progress
        self.wandb_cfg = wandb
        self.dist = setup_distributed(device)
        self.device = self.dist.device
        self.run_dir = Path(tc.run_dir) if tc.run_dir else None
        self.ckpt_root = self.run_dir / "checkpoints" if self.run_dir else None
        self._configure_backends()

        resume_dir = self._resolve_resume(resume)  # None also for a run stopped before its first checkpoint
        seed_everything(tc.seed)  # identical initial weights on every rank (FSDP does not broadcast them)
        self.model = task.build_model(self.device, resume_dir is not None)
        for message in getattr(task, "messages", []):
            self.info(message)
        self.model.to(self.device)
        self.trainable_summary = apply_trainable(self.model, tc.trainable, tc.lora, task.lora_targets)
        if self.trainable_summary:
            self.info(self.trainable_summary)
        self.ema = create_ema(self.model) if tc.ema_decay is not None else None
        task.setup(self)

        self.dataset = None if hasattr(task, "draw_batch") else task.dataset(self)
        if self.dataset is not None and batches_per_epoch(len(self.dataset), tc.batch_size, self.dist.world_size) < 1:
            raise ConfigError(f"train.batch_size: the dataset has {len(self.dataset)} items, fewer than one batch "
                              f"of {tc.batch_size} per rank on {self.dist.world_size} rank(s)")
        if self.dataset is None and tc.grad_accum != 1:
            raise ConfigError("train.grad_accum: this task draws one batch per step; use 1")
        self.loader = None if self.dataset is None else ResumableLoader(
            self.dataset, tc.batch_size, seed=tc.seed, num_workers=tc.num_workers,
            pin_memory=self.device.type == "cuda", rank=self.dist.rank, world_size=self.dist.world_size)

        self.step = 0
        self.guard = NonFiniteGuard(tc.max_nonfinite)
        if resume_dir is not None:  # weights before wrapping/sharding, optimizer state after
            task.check_resume(resume_dir)
            self._load_weights(resume_dir)
        self.forward_model = self._wrap_model()
        fused = self.device.type == "cuda" and tc.distributed != "fsdp"
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay,
                                           eps=tc.eps, **({"fused": True} if fused else {}))
        self.scaler = (torch.amp.GradScaler(self.device.type, init_scale=tc.loss_scale_init,
                                            growth_interval=tc.loss_scale_window)
                       if tc.precision == "fp16" else None)
        if resume_dir is not None:
            self._load_train_state(resume_dir)
        if resume_dir is None:
            seed_everything(tc.seed + self.dist.rank)

    # ------------------------------------------------------------------------------------------------ set-up
    def _configure_backends(self) -> None:
        tc = self.train_cfg
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tc.tf32
            torch.backends.cudnn.allow_tf32 = tc.tf32
        if tc.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

    def _wrap_model(self) -> torch.nn.Module:
        tc, model = self.train_cfg, self.model
        if self.dist.enabled and tc.distributed == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=AUTOCAST[tc.precision]) if tc.precision == "bf16" else None
            kwargs = {"mp_policy": mp} if mp else {}
            for block in self.task.blocks(model):
                fully_shard(block, **kwargs)
            fully_shard(model, **kwargs)
        forward = torch.compile(model) if tc.compile else model
        if self.dist.enabled and tc.distributed == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(forward, device_ids=ids)
        return forward

    def context(self) -> StepContext:
        tc = self.train_cfg
        return StepContext(step=self.step, seed=tc.seed, device=self.device, precision=tc.precision)

    # -------------------------------------------------------------------------------------------- one step
    def _micro_step(self, batch, last: bool) -> dict:
        """Forward + backward of one micro-batch; returns the task's detached loss terms."""
        sync = contextlib.nullcontext()
        if not last and hasattr(self.forward_model, "no_sync"):
            sync = self.forward_model.no_sync()
        elif hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2
            self.model.set_requires_gradient_sync(last)
        with sync:
            terms = self.task.loss(self.forward_model, batch, self.context())
            loss = terms["loss"] / self.train_cfg.grad_accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        return {k: v.detach() for k, v in terms.items()}

    def _grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients, clipping them from ``start_clip_step`` on (official)."""
        tc = self.train_cfg
        clip = tc.clip_grad_norm if (tc.clip_grad_norm is not None and self.step >= tc.start_clip_step) else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def train_step(self, micro_batches: list) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches; returns the logged scalars."""
        tc = self.train_cfg
        self.model.train()
        names, terms = None, None
        for i, batch in enumerate(micro_batches):
            out = self._micro_step(batch, last=i == len(micro_batches) - 1)
            values = torch.stack([out[k].float().reshape(()) for k in out]).to(self.device)
            names = list(out)
            terms = values if terms is None else terms + values
        terms /= len(micro_batches)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._grad_norm()
        stats = torch.cat([terms, grad_norm.reshape(1).float().to(self.device)])
        reduced = all_reduce_mean(stats).tolist()
        scalars = dict(zip(names, reduced[:-1]))
        loss = scalars["loss"]
        norm = float(grad_norm)
        lr = self.task.learning_rate(self.step, tc)
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
            if self.ema is not None:
                update_ema(self.ema, self.model, tc.ema_decay)
        else:
            self.info(f"step {self.step}: skipped ({'fp16 overflow' if overflow else 'non-finite'}: "
                      f"loss={loss:.4g}, grad norm={norm:.4g})")
        if self.scaler:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        out = {**scalars, "grad_norm": norm, "lr": lr, "skipped": float(not applied)}
        if self.scaler:
            out["loss_scale"] = float(self.scaler.get_scale())
        return out

    # ---------------------------------------------------------------------------------------------- data
    @property
    def position(self) -> DataPosition:
        """Where the data loader stands: ``(epoch, batches of it consumed)`` on this rank."""
        return self.loader.position if self.loader is not None else DataPosition()

    def batches(self) -> Iterator:
        """Endless stream of this rank's micro-batches (the data loader's, advancing :attr:`position`)."""
        if self.loader is None:  # the task draws a batch per optimizer step, keyed by the step
            while True:
                yield self.task.draw_batch(self.step)
        yield from self.loader.batches()

    # --------------------------------------------------------------------------------------- checkpoints
    def _resolve_resume(self, resume: Optional[str]) -> Optional[Path]:
        if resume is None:
            if self.ckpt_root is not None and ckpt.list_checkpoints(self.ckpt_root):
                raise ConfigError(f"train.run_dir: {self.run_dir} already holds checkpoints; continue it with "
                                  "--resume, or choose a new train.run_dir")
            return None
        path = Path(resume) if resume else self.run_dir
        if path is None:
            raise ConfigError("--resume without a path needs train.run_dir")
        try:
            found = ckpt.resolve_checkpoint(path)
        except FileNotFoundError:
            if self.run_dir is None or path.resolve() != self.run_dir.resolve() or not path.is_dir():
                raise
            self.info(f"--resume {path}: the run has no checkpoint yet (it stopped before the first one); "
                      "starting it from scratch")
            return None
        self.last_healthy_checkpoint = found
        return found

    def _load_weights(self, ckpt_dir: Path) -> None:
        self.task.load_weights(self.model, ckpt_dir / self.task.model_dir)
        if self.ema is not None:
            self.task.load_weights(self.ema, ckpt_dir / "ema")
        self.model.to(self.device)
        if self.ema is not None:
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
        if state.get("task"):
            self.task.load_state_dict(state["task"])
        tc, world = self.train_cfg, self.dist.world_size
        same_layout = (state["world_size"], state["batch_size"]) == (world, tc.batch_size)
        if same_layout:
            if self.loader is not None:
                self.loader.position = DataPosition(**state["data"])
            restore_rng_state(state["rng"][self.dist.rank])
        else:  # continue after the same number of samples; exact resume needs the same layout
            seen = state["data"]["batch"] * state["batch_size"] * state["world_size"]
            if self.loader is not None:
                self.loader.position = DataPosition(epoch=state["data"]["epoch"], batch=seen // (tc.batch_size * world))
            seed_everything(tc.seed + self.dist.rank + self.step)
            self.info(f"resuming with world size {world} x batch {tc.batch_size} (checkpoint: "
                      f"{state['world_size']} x {state['batch_size']}): continuing, but not bit-exactly")
        self.info(f"resumed from {ckpt_dir} at step {self.step}")

    def save_checkpoint(self) -> Optional[Path]:
        """Write ``step_XXXXXXX`` (all ranks take part: FSDP gathers the full weights; rank 0 writes).

        Returns None without a run directory (``train.run_dir: null``)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        if self.ckpt_root is None:
            return None
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(self.model, options=options)
        optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        rng = all_gather_objects(capture_rng_state())
        path = self.ckpt_root / ckpt.checkpoint_name(self.step)
        if self.dist.is_main:
            states = [("model", model_state)] + ([("ema", self.ema.state_dict())] if self.ema is not None else [])
            for name, state in states:
                bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
                if bad:
                    raise NonFiniteError(f"refusing to write checkpoint step {self.step}: {name} weights "
                                         f"{', '.join(bad[:5])} are not finite")
            tc = self.train_cfg
            train_state = {
                "format": 1, "step": self.step, "optimizer": optim_state,
                "grad_scaler": self.scaler.state_dict() if self.scaler else {},
                "rng": rng, "data": self.position.state_dict(), "guard": self.guard.state_dict(),
                "world_size": self.dist.world_size, "batch_size": tc.batch_size, "grad_accum": tc.grad_accum,
                "task": self.task.state_dict(),
            }

            def fill(tmp: Path) -> None:
                self.task.save_weights(self.model, tmp / self.task.model_dir, model_state)
                if self.ema is not None:
                    self.task.save_weights(self.ema, tmp / "ema", None)
                self.task.save_config(tmp)
                torch.save(train_state, tmp / ckpt.TRAIN_STATE)

            path = ckpt.write_checkpoint(self.ckpt_root, self.step, fill)
            self.last_healthy_checkpoint = path
            ckpt.prune_checkpoints(self.ckpt_root, tc.keep_last, tc.keep_every)
            self.info(f"checkpoint {path}")
        barrier()
        return path

    # ------------------------------------------------------------------------------------------- logging
    def info(self, message: str) -> None:
        """A message for the user (rank 0): progress-bar-safe console line + ``log.txt``."""
        if not self.dist.is_main:
            return
        if self._pbar is not None:
            log.info(message)
            self._pbar.write(message)
        else:
            self._early_messages.append(message)
            print(message, flush=True)

    def _start_logging(self) -> None:
        if not self.dist.is_main:
            return
        from tqdm.auto import tqdm

        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_tmp(self.ckpt_root)
            _truncate_log(self.run_dir / "log.txt", self.step)  # steps after the resume point are replayed
            handler = logging.FileHandler(self.run_dir / "log.txt")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False  # the progress bar prints; the file keeps everything
            for message in self._early_messages:
                log.info(message)
            self._log_handler = handler
            self.task.save_config(self.run_dir)
            from torch.utils.tensorboard import SummaryWriter

            # points after this step (from before a crash) are replayed: drop them, keep this step's own point
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
            if self.wandb_cfg is not None and self.wandb_cfg.enabled:
                self.wandb_run = _start_wandb(self.wandb_cfg, self.run_dir, self.task.config_dict())
        self._early_messages.clear()
        self._pbar = tqdm(total=self.train_cfg.max_steps, initial=self.step, desc=self.task.name, unit="step",
                          dynamic_ncols=True, disable=not self.progress)

    def _stop_logging(self) -> None:
        if not self.dist.is_main:
            return
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def _log_scalars(self, stats: dict, items: int, seconds: float) -> None:
        """Progress bar every step; log line, TensorBoard and W&B every ``log_every`` steps (window means)."""
        self.last_stats = stats
        window = self._window
        for k, v in stats.items():
            window[k] = window.get(k, 0.0) + v
        window["_steps"] = window.get("_steps", 0) + 1
        window["_items"] = window.get("_items", 0) + items
        window["_seconds"] = window.get("_seconds", 0.0) + seconds
        if not self.dist.is_main:
            return
        unit = self.task.throughput_unit
        self._pbar.set_postfix(loss=f"{stats['loss']:.4f}", **{unit: f"{items / max(seconds, 1e-9):.0f}"},
                               refresh=False)
        if self.step % self.train_cfg.log_every and self.step != self.train_cfg.max_steps:
            return
        n = window.pop("_steps")
        scalars = {k: v / n for k, v in window.items() if not k.startswith("_")}
        scalars["skipped"] *= n  # a count over the window, not a mean
        scalars[f"{unit}_per_s"] = window["_items"] / max(window["_seconds"], 1e-9)
        scalars["memory_gb"] = _memory_gb(self.device)
        self._window = {}
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(f"train/{name}", value, self.step)
        if self.wandb_run is not None:
            self.wandb_run.log({f"train/{k}": v for k, v in scalars.items()}, step=self.step)
        self.info(f"step {self.step}/{self.train_cfg.max_steps} " + " ".join(
            f"{k} {v:.4g}" for k, v in scalars.items()))

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        tc = self.train_cfg
        self._start_logging()
        batches = self.batches()
        last_ckpt, stopped_by = None, "max_steps"
        items = None
        self._window = {}
        try:
            with GracefulStop() as stop:
                while self.step < tc.max_steps:
                    start = time.perf_counter()
                    micro = [next(batches) for _ in range(tc.grad_accum)]
                    stats = self.train_step(micro)
                    if items is None:
                        items = self.task.batch_items(micro[0]) * tc.grad_accum * self.dist.world_size
                    if self._pbar is not None:
                        self._pbar.update(1)
                    self._log_scalars(stats, items, time.perf_counter() - start)
                    stop_now = bool(all_reduce_mean(torch.tensor([float(stop.requested is not None)],
                                                                 device=self.device)).item() > 0)
                    if self.step % tc.ckpt_every == 0 or self.step == tc.max_steps or stop_now:
                        if self.guard.consecutive == 0:
                            last_ckpt = self.save_checkpoint() or last_ckpt
                        else:  # the weights are those of the last applied step, whose checkpoint is kept
                            self.info(f"step {self.step}: checkpoint not written (the last {self.guard.consecutive} "
                                      f"step(s) were skipped as non-finite); last healthy checkpoint: "
                                      f"{self.last_healthy_checkpoint or 'none'}")
                    every = self.task.validation_every
                    if every and self.step % every == 0:
                        self.validate()
                    if self.on_step_end is not None:
                        self.on_step_end(self)
                    if stop_now:
                        stopped_by = stop.requested or "signal"
                        self.info(f"stopped by {stopped_by} after step {self.step}; resume with "
                                  f"`{self.task.resume_command}`")
                        break
        except NonFiniteError as e:
            where = (f"Then resume from {self.last_healthy_checkpoint}, the last checkpoint written after a healthy "
                     f"step (`{self.task.resume_command}`)." if self.last_healthy_checkpoint is not None
                     else "There is no checkpoint to resume from: start the run again.")
            self.info(f"{e} {where}")
            raise NonFiniteError(f"{e} {where}") from None
        finally:
            self._stop_logging()
        return TrainResult(step=self.step, run_dir=self.run_dir, last_checkpoint=last_ckpt, stopped_by=stopped_by)

    def validate(self) -> list[Path]:
        """Validation samples of the EMA weights through the task's sampling pipeline (rank 0)."""
        paths = []
        if self.dist.is_main:
            paths = self.task.validate(self)
            self.info(f"validation samples: {', '.join(str(p) for p in paths)}")
        barrier()
        return paths


def _truncate_log(path: Path, step: int) -> None:
    """Cut ``log.txt`` before its first line about an optimizer step after ``step`` (to be replayed now)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = re.search(r" step (\d+)[/:]", line)
        if m and int(m.group(1)) > step:
            atomic_write_text(path, "".join(lines[:i]))
            return


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _start_wandb(w, run_dir: Path, config: dict):
    try:
        import wandb
    except ImportError:
        raise ConfigError("wandb.enabled: the wandb package is not installed (pip install wandb)") from None
    return wandb.init(project=w.project, entity=w.entity, name=w.run_name or run_dir.name, mode=w.mode,
                      dir=str(run_dir), config=config, resume="allow")


def run(task, train, **kwargs) -> TrainResult:
    """Build an :class:`Engine` for ``task`` and fit it (tearing down the process group afterwards)."""
    engine = Engine(task, train, **kwargs)
    try:
        return engine.fit()
    finally:
        cleanup_distributed()
