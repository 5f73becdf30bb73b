"""The Audio Spectrogram Transformer (Gong, Chung and Glass 2021, "AST: Audio Spectrogram
Transformer"): ViT over a log-mel spectrogram.

The (frames, mel bins) input is turned into an image (B, 1, F, T) with frequency as its height
and time as its width, cut into overlapping 16 x 16 patches (a Conv2d of kernel 16 and stride
(frequency_stride, time_stride), 10 x 10 in the paper, sec. 2.1: "with an overlap of 6 in both
time and frequency dimension"), row-major over (frequency, time); a [CLS] and a distillation
token go in front (the paper starts from DeiT), learned positions are added, the pre-norm ViT
encoder reads the sequence, and the head (LayerNorm + Linear) classifies the mean of the two
prefix tokens' final states, as Hugging Face's ASTForAudioClassification does.

    model = build_model("ast-tiny")
    out = model(input_values, labels=labels)   # (B, max_length, num_mel_bins) float, (B,) long
    out.logits        # (B, num_labels); out.last_hidden_state (B, 2 + gf * gt, D)
    model.patch_grid()  # (gf, gt) = ((F - 16) // fs + 1, (T - 16) // ts + 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError, DataError
from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.models.common import PretrainedModel, check_class_labels
from attnlab.models.vit import (
    ImageClassifierOutput,
    PatchEmbedding,
    check_encoder_config,
    check_labels,
    encoder,
    init_weights,
    layer_norm,
)

SPECTROGRAM_LIMIT = 2**20  # frames or mel bins; far above any real checkpoint (1024 x 128)


@dataclass(frozen=True)
class ASTConfig:
    """Hyperparameters of AST (defaults: the AudioSet model of the paper, Hugging Face's
    MIT/ast-finetuned-audioset-10-10-0.4593: 1024 frames x 128 mel bins, strides 10 x 10)."""

    model_type: ClassVar[str] = "audio-spectrogram-transformer"

    num_mel_bins: int = 128
    max_length: int = 1024  # frames (10 ms each): the model reads exactly this many
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    init_std: float = 0.02
    kernel: str = "sdpa"
    num_labels: int = 527  # AudioSet's classes; 0: no head (Hugging Face's ASTModel)
    labels: tuple[str, ...] = ()  # class names (empty, or one per label): id2label in HF

    def __post_init__(self) -> None:
        check_encoder_config(self)
        for name in ("num_mel_bins", "max_length", "patch_size", "frequency_stride",
                     "time_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 1 <= value <= SPECTROGRAM_LIMIT:
                raise ConfigError(f"{name} must be an integer in [1, {SPECTROGRAM_LIMIT:,}], "
                                  f"got {value!r}")
        for name in ("num_mel_bins", "max_length"):
            if self.patch_size > getattr(self, name):
                raise ConfigError(f"patch_size ({self.patch_size}) must be <= {name} "
                                  f"({getattr(self, name)})")
        check_labels(self)


class AST(PretrainedModel):
    """forward(input_values (B, max_length, num_mel_bins) float, labels=None (B,) long, *,
    output_attentions=False) -> ImageClassifierOutput (pooler_output: the mean of the [CLS]
    and distillation states, Hugging Face's ASTModel pooler_output)."""

    config_class = ASTConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # reads spectrograms, generates nothing
    main_input_name: ClassVar[str] = "input_values"  # as transformers names it
    num_prefix_tokens: ClassVar[int] = 2  # [CLS], distillation

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.config = c = config
        p = c.patch_size
        self.embeddings = PatchEmbedding(c.d_model, 1, (p, p), (c.frequency_stride,
                                         c.time_stride), self.patch_grid(),
                                         prefix_tokens=self.num_prefix_tokens, dropout=c.dropout)
        self.encoder = encoder(c)
        self.head_norm = layer_norm(c) if c.num_labels else None
        self.classifier = nn.Linear(c.d_model, c.num_labels) if c.num_labels else None
        self.reset_parameters()

    def patch_grid(self) -> tuple[int, int]:
        """(gf, gt): patches along frequency and time (Hugging Face's ASTEmbeddings.get_shape);
        patch (i, j) covers mel bins [i * fs, i * fs + 16) and frames [j * ts, j * ts + 16)."""
        c = self.config
        return ((c.num_mel_bins - c.patch_size) // c.frequency_stride + 1,
                (c.max_length - c.patch_size) // c.time_stride + 1)

    def reset_parameters(self) -> None:
        init_weights(self, self.config.init_std)

    def check_input(self, input_values: Tensor) -> None:
        c, name = self.config, "input_values"
        if not isinstance(input_values, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(input_values).__name__}")
        if not input_values.is_floating_point():
            raise TypeError(f"{name} must be a float tensor (log-mel features), got dtype "
                            f"{input_values.dtype}")
        if input_values.dim() != 3 or input_values.size(0) == 0:
            raise DataError(f"{name} must have shape (batch, frames={c.max_length}, "
                            f"num_mel_bins={c.num_mel_bins}), got {tuple(input_values.shape)}")
        frames, bins = input_values.shape[1:]
        if bins != c.num_mel_bins:
            raise DataError(f"{name}: expected {c.num_mel_bins} mel bins (config.num_mel_bins) "
                            f"in the last dimension, got {bins}")
        if frames != c.max_length:
            more = "more" if frames > c.max_length else "fewer"
            raise DataError(f"{name}: expected exactly {c.max_length} frames (config.max_length;"
                            f" AudioFeatures pads or cuts to it), got {frames}, {more}")


    def forward(self, input_values: Tensor, labels: Tensor | None = None, *,
                output_attentions: bool = False) -> ImageClassifierOutput:
        self.check_input(input_values)
        if labels is not None:
            check_class_labels(labels, input_values.size(0), self.config.num_labels)
        weight = self.embeddings.projection.weight
        image = input_values.to(weight.dtype).unsqueeze(1).transpose(2, 3)  # (B, 1, F, T)
        x = self.embeddings(image)  # (B, 2 + gf * gt, D)
        enc = self.encoder(x, output_attentions=output_attentions)
        hidden = enc.last_hidden_state  # (B, T, D), after the final LayerNorm
        pooled = (hidden[:, 0] + hidden[:, 1]) / 2  # (B, D)
        out = ImageClassifierOutput(None, hidden, None, enc.attentions, pooled)
        if self.classifier is None or self.head_norm is None:
            return out
        out.logits = self.classifier(self.head_norm(pooled))  # (B, num_labels)
        if labels is not None:
            out.loss = F.cross_entropy(out.logits.float(), labels)
        return out


__all__ = ["AST", "ASTConfig"]
