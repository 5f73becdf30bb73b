"""Train an Audio Spectrogram Transformer (Gong et al. 2021) to classify sounds: the built-in
spoken words (synthesised with Debian's espeak-ng in many voices; test voices never heard in
training) or a folder of class folders of WAV / FLAC files (DIR/train/<class>/*.wav,
DIR/test/<class>/..., resampled to 16 kHz).

waveforms (`attnlab.data.audio`) -> Kaldi log-mel filterbanks (`AudioFeatures`, equal to
transformers' ASTFeatureExtractor), padded or cut to the model's frames and normalised with the
training split's mean and std (saved as preprocessor_config.json) -> SpecAugment (Park et al.
2019: random frequency and time masks) and a random time shift, seeded per batch -> AST ->
label-smoothed cross-entropy on the run routine -> test accuracy on held-out voices, per-class
accuracy and confusion_matrix.png. The folder loads in transformers as
ASTForAudioClassification with its ASTFeatureExtractor, and in `attnlab classify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from attnlab.models import build_model, list_models
from attnlab.tasks.perception import (
    SPLITS,
    Examples,
    TensorClassificationTask,
    TensorClassifySettings,
)
from attnlab.tokenizers.audio_features import AudioFeatures, fbank
from attnlab.training.settings import SettingError, check_non_negative_ints, setting
from attnlab.training.trainer import TrainResult


def audio_presets() -> list[str]:
    return list_models("audio-spectrogram-transformer")


@dataclass
class AudioSettings(TensorClassifySettings):
    """Everything `attnlab train audio` takes; saved as `train_settings.json`."""

    data: str = setting("builtin:spoken-words", "builtin:spoken-words, or a folder "
                                                "DIR/train/<class>/*.wav|flac and "
                                                "DIR/test/<class>/... (optional DIR/valid; "
                                                "else 10% of train)", data=True)
    out: str = setting("runs/audio", "output folder (model, checkpoints, metrics)")
    preset: str = setting("ast-words", "model size (an AST preset; its num_mel_bins and "
                                       "max_length frames set the features)",
                          choices=audio_presets)
    freq_masks: int = setting(2, "SpecAugment: frequency masks per example")
    freq_mask_width: int = setting(8, "SpecAugment: widest frequency mask, in mel bins")
    time_masks: int = setting(2, "SpecAugment: time masks per example")
    time_mask_width: int = setting(10, "SpecAugment: widest time mask, in frames (10 ms)")
    time_shift: int = setting(8, "shift each example by up to this many frames either way "
                                 "(0: off)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative_ints(self, ("freq_masks", "freq_mask_width", "time_masks",
                                       "time_mask_width", "time_shift"))
        if self.preset not in audio_presets():
            raise SettingError("preset", f"preset must be an audio model, one of "
                                         f"{audio_presets()}, got {self.preset!r}")
        if not self.data:
            raise SettingError("data", "data must be builtin:spoken-words or a folder, got ''")


def spec_augment(features: Tensor, *, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int, generator: torch.Generator, fill: float = 0.0) -> Tensor:
    """(B, T, F) -> the same with `freq_masks` bands of up to `freq_width` mel bins and
    `time_masks` spans of up to `time_width` frames set to `fill` in each example
    (SpecAugment, Park et al. 2019, without time warping)."""
    B, T, F = features.shape
    keep = torch.ones(B, T, F, dtype=torch.bool)
    for count, width, size, axis in ((freq_masks, freq_width, F, 2), (time_masks, time_width,
                                                                       T, 1)):
        positions = torch.arange(size)  # (size,)
        for _ in range(count if width else 0):
            widths = torch.randint(0, min(width, size) + 1, (B, 1), generator=generator)
            starts = (torch.rand(B, 1, generator=generator) * (size - widths + 1)).long()
            band = (positions >= starts) & (positions < starts + widths)  # (B, size)
            keep &= ~(band[:, None, :] if axis == 2 else band[:, :, None])
    return features.masked_fill(~keep, fill)


def time_shifted(features: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Roll each example (B, T, F) in time by a random number of frames in [-shift, shift]."""
    B, T, _ = features.shape
    offsets = torch.randint(-shift, shift + 1, (B, 1), generator=generator)  # (B, 1)
    index = (torch.arange(T) - offsets) % T  # (B, T)
    return features.gather(1, index[:, :, None].expand_as(features))


class AudioClassificationTask(TensorClassificationTask):
    name = "audio"
    input_name = "input_values"
    settings: AudioSettings

    def read_splits(self) -> tuple[dict[str, Examples], list[str]]:
        from attnlab.data.audio import load_audio

        splits = load_audio(self.settings.data, seed=0)
        self.waveforms = {name: split.waveforms for name, split in splits.items()}
        self.speakers = {name: sorted(set(split.speakers)) for name, split in splits.items()}
        examples = {name: Examples(torch.empty(0), split.labels, split.sources)
                    for name, split in splits.items()}  # inputs: features, in `prepare`
        return examples, splits["train"].classes

    def build(self, out: Path) -> nn.Module:
        s = self.settings
        model = build_model(s.preset, **{"num_labels": len(self.classes),
                                         "labels": tuple(self.classes), **s.model_overrides})
        c = model.config
        frames = torch.cat([fbank(w, num_mel_bins=c.num_mel_bins)
                            for w in self.waveforms["train"]])  # (all frames, F)
        mean, std = frames.mean().item(), frames.std().item()
        AudioFeatures(num_mel_bins=c.num_mel_bins, max_length=c.max_length,
                      mean=round(mean, 6), std=round(std, 6)).save(out)
        return model

    def prepare(self, model: nn.Module, out: Path) -> None:
        self.features = AudioFeatures.load(out)
        for name in tqdm(SPLITS, desc="filterbank features", disable=not self.progress):
            self.splits[name].inputs = self.features(self.waveforms[name])  # (N, T, F)

    def augment(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        s = self.settings
        if s.time_shift:
            inputs = time_shifted(inputs, s.time_shift, generator)
        return spec_augment(inputs, freq_masks=s.freq_masks, freq_width=s.freq_mask_width,
                            time_masks=s.time_masks, time_width=s.time_mask_width,
                            generator=generator)  # masked: the mean (0 once normalised)

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        metrics = super().metrics(model, result, precision)
        metrics["speakers"] = {name: len(v) for name, v in self.speakers.items()}
        metrics["test_speakers_in_train"] = sorted(set(self.speakers["test"])
                                                   & set(self.speakers["train"]))
        return metrics
