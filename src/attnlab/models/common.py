"""Input checks and small helpers shared by every model family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.io import save_folder
from attnlab.io.limits import size_error
from attnlab.nn.functional import check_attention_mask, padding_mask
from attnlab.nn.moe import MoE
from attnlab.tokenizers import Tokenizer


def check_input_ids(ids: Tensor, config: Any, name: str = "input_ids", offset: int = 0) -> None:
    """Raise a clear error unless `ids` is a non-empty integer (B, T) tensor of valid token ids
    whose positions (after `offset` cached ones) fit in `config.max_seq_len`."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(ids.shape)}")
    length = offset + ids.size(1)
    if length > config.max_seq_len:
        raise ValueError(
            f"{name}: sequence length {length} exceeds max_seq_len={config.max_seq_len}"
        )
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"{name} must be token ids in [0, vocab_size={config.vocab_size}), "
            f"got values in [{low}, {high}]"
        )


def check_pixel_batch(pixel_values: Tensor, num_channels: int,
                      name: str = "pixel_values") -> None:
    """Raise unless `pixel_values` is a non-empty float (B, num_channels, H, W) tensor: a
    TypeError for a non-tensor or integer pixels, a DataError naming the shape otherwise (the
    image classifiers' input check)."""
    from attnlab.errors import DataError

    if not isinstance(pixel_values, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pixel_values).__name__}")
    if not pixel_values.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (normalised pixels), got dtype "
                        f"{pixel_values.dtype}")
    if pixel_values.dim() != 4 or pixel_values.size(1) != num_channels:
        raise DataError(f"{name} must have shape (batch, {num_channels}, height, width), "
                        f"got {tuple(pixel_values.shape)}")
    if pixel_values.numel() == 0:
        raise DataError(f"{name} is empty: shape {tuple(pixel_values.shape)}")


def check_class_labels(labels: Tensor, batch: int, num_labels: int) -> None:
    """Raise DataError unless `labels` are (batch,) integer classes in [0, num_labels) of a
    model with a classification head (the image and audio classifiers)."""
    from attnlab.errors import DataError

    if not num_labels:
        raise DataError("labels given, but the model has no classification head "
                        "(num_labels=0)")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.shape != (batch,):
        raise DataError(f"labels must be integer classes of shape ({batch},), got "
                        f"{labels.dtype} {tuple(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_labels:
        raise DataError(f"labels must be in [0, num_labels={num_labels}), got values in "
                        f"[{low}, {high}]")


def key_padding_mask(mask: Tensor | None, batch: int, length: int | None,
                     name: str = "attention_mask") -> Tensor | None:
    """A Hugging Face style (B, S) mask (1 = real token), checked to be exactly (batch,
    length), as the (B, 1, 1, S) boolean key mask the attention blocks take; None stays None."""
    if mask is None:
        return None
    check_attention_mask(mask, batch, length, name)
    return padding_mask(mask)  # (B, 1, 1, S); refuses a float mask


def shift_right(labels: Tensor, start_token_id: int, pad_token_id: int) -> Tensor:
    """Teacher forcing: decoder inputs are the labels shifted one step right after a start
    token; ignored label positions (-100) become padding."""
    shifted = labels.new_full(labels.shape, pad_token_id)  # (B, T)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def check_positive_ints(obj: Any, names: tuple[str, ...]) -> None:
    """Raise ValueError naming the first of `names` on `obj` that is not a positive int, or
    that is above its sane bound (`attnlab.io.limits`: a config asking for a 10**12-token
    vocabulary is a typo, refused before anything is allocated)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        problem = size_error(name, value)
        if problem is not None:
            raise ValueError(problem)


def check_token_ids(config: Any, names: tuple[str, ...] = ("bos_token_id", "eos_token_id",
                                                             "pad_token_id")) -> None:
    """Raise ValueError naming the first of the special token ids `names` on `config` that is
    not None and lies outside [0, vocab_size)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not 0 <= value < config.vocab_size:
            raise ValueError(f"{name} must be in [0, vocab_size={config.vocab_size}), "
                             f"got {value}")


def init_normal_(model: nn.Module, std: float) -> None:
    """N(0, std) for every Linear and Embedding weight, zeros for Linear biases (the GPT-2,
    BERT and LLaMA initialisation; norms keep their ones/zeros)."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def init_moe_(model: nn.Module, std: float, *, down_std: float | None = None,
              router_std: float | None = None) -> None:
    """Every mixture-of-experts layer's weights: router N(0, router_std or std), experts'
    gate / up projections N(0, std), down projections N(0, down_std or std), zero biases (the
    family's own init applied per expert; nn.Linear-only inits do not reach these 3-D weights).
    The noisy-gating projection is an nn.Linear, left to the family's Linear init."""
    for module in model.modules():
        if isinstance(module, MoE):
            nn.init.normal_(module.router.weight, std=std if router_std is None else router_std)
            module.experts.reset_parameters(std, down_std)


class PretrainedModel(nn.Module):
    """Base of every family: `save_pretrained(dir)` next to `attnlab.from_pretrained(dir)`."""

    config: Any

    def save_pretrained(self, directory: str | Path, *, layout: str = "auto",
                        tokenizer: Tokenizer | None = None,
                        generation: dict[str, Any] | None = None) -> Path:
        """Write config.json + model.safetensors (+ tokenizer.json, + generation_config.json
        from `generation`) into `directory` (created if needed), through the folder owner
        `attnlab.io.save_folder`.

        layout "hf" writes Hugging Face names, so `transformers` loads the folder with its own
        `from_pretrained`; "attnlab" writes our names; "auto" picks "hf" for the families
        transformers has (GPT-2, LLaMA, BERT, T5, ViT / DeiT, Mixtral, Mamba, RWKV, and a
        Transformer whose config Marian's layout holds; GPT-2, LLaMA and T5 without
        mixture-of-experts layers) and "attnlab" for the others (RetNet, the LSTM LM, ...).
        """
        return save_folder(self, directory, layout=layout, tokenizer=tokenizer,
                           generation=generation)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["PretrainedModel", "check_attention_mask", "check_class_labels", "check_input_ids",
           "check_pixel_batch", "check_positive_ints", "check_token_ids", "init_moe_",
           "init_normal_", "key_padding_mask", "shift_right"]
