"""What turns a waveform into an Audio Spectrogram Transformer's input (Gong et al. 2021, "AST:
Audio Spectrogram Transformer"): Kaldi's log-mel filterbank (`compute-fbank-feats`, as
torchaudio's `compliance.kaldi.fbank` computes it with AST's settings: 25 ms Hann window, 10 ms
hop, no dither, DC offset removed per frame, pre-emphasis 0.97, power spectrum, triangular mel
filters from 20 Hz to Nyquist built on Kaldi's mel scale, log of the energies floored at float32
epsilon), padded or cut to a fixed number of frames and normalised with AudioSet's mean and
std as `(x - mean) / (2 * std)`. The settings are those of Hugging Face's `ASTFeatureExtractor`
and are saved as its `preprocessor_config.json`, so transformers reads our folders and we read
theirs. Written in torch (float64 inside) because torchaudio is not installable beside our
torch; `tests/tokenizers/test_audio_features.py` checks it against ASTFeatureExtractor.

    features = AudioFeatures(num_mel_bins=64, max_length=100)
    input_values = features([waveform_16k, ...], sampling_rate=16000)  # (B, 100, 64) float32
    features.save(run_dir); AudioFeatures.load(run_dir)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attnlab.errors import ConfigError, DataError, FolderError, MissingFileError
from attnlab.serialization import atomic_write

PREPROCESSOR_NAME = "preprocessor_config.json"
FRAME_MS, HOP_MS = 25, 10  # Kaldi's frame_length and frame_shift
PREEMPHASIS = 0.97
LOW_FREQUENCY = 20.0  # Hz; the high edge is Nyquist (Kaldi's high_freq=0)
ENERGY_FLOOR = torch.finfo(torch.float32).eps  # Kaldi/torchaudio floor the mel energies here


def frame_sizes(sample_rate: int) -> tuple[int, int, int]:
    """(frame length, hop, FFT size) in samples: 400, 160, 512 at 16 kHz."""
    length = sample_rate * FRAME_MS // 1000
    return length, sample_rate * HOP_MS // 1000, 1 << max(length - 1, 1).bit_length()


def kaldi_mel(hz: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_filters(num_mel_bins: int, fft_size: int, sample_rate: int) -> Tensor:
    """(fft_size // 2 + 1, num_mel_bins) triangles, linear in Kaldi's mel scale, whose edges
    are equally spaced mels from 20 Hz to Nyquist; the Nyquist bin gets weight 0 (as Kaldi)."""
    low, high = kaldi_mel(torch.tensor([LOW_FREQUENCY, sample_rate / 2], dtype=torch.float64))
    edges = torch.linspace(float(low), float(high), num_mel_bins + 2, dtype=torch.float64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]  # (M,) each
    bins = torch.arange(fft_size // 2 + 1, dtype=torch.float64) * sample_rate / fft_size
    mel = kaldi_mel(bins).unsqueeze(1)  # (F, 1)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.minimum(up, down).clamp(min=0.0)  # (F, M)


def _check_setting(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def fbank(waveform: Tensor, sample_rate: int = 16000, num_mel_bins: int = 128) -> Tensor:
    """Kaldi log-mel filterbank of a mono float waveform (N,) -> float32 (frames, num_mel_bins),
    frames = 1 + (N - 400) // 160 at 16 kHz (Kaldi's snip_edges: no padding)."""
    _check_setting("sample_rate", sample_rate, 1000)
    _check_setting("num_mel_bins", num_mel_bins, 1)
    if not isinstance(waveform, Tensor) or not waveform.is_floating_point():
        got = waveform.dtype if isinstance(waveform, Tensor) else type(waveform).__name__
        raise DataError(f"waveform must be a float tensor of samples, got {got}")
    if waveform.dim() != 1:
        raise DataError(f"waveform must be one mono channel of shape (N,), got shape "
                        f"{tuple(waveform.shape)}")
    length, hop, fft_size = frame_sizes(sample_rate)
    if waveform.numel() < length:
        raise DataError(f"waveform must hold at least one {FRAME_MS} ms frame ({length} samples "
                        f"at {sample_rate} Hz), got {waveform.numel()} samples")
    if not bool(torch.isfinite(waveform).all()):
        raise DataError("waveform must hold finite samples, got NaN or infinity")
    x = waveform.detach().to("cpu", torch.float64)
    frames = x.unfold(0, length, hop)  # (T, L), T = 1 + (N - L) // hop
    frames = frames - frames.mean(dim=1, keepdim=True)  # remove the DC offset per frame
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[-1] := x[0], as Kaldi
    frames = frames - PREEMPHASIS * previous
    frames = frames * torch.hann_window(length, periodic=False, dtype=torch.float64)
    power = torch.fft.rfft(frames, n=fft_size).abs().pow(2)  # (T, fft_size // 2 + 1)
    energies = power @ mel_filters(num_mel_bins, fft_size, sample_rate)  # (T, M)
    return energies.clamp(min=ENERGY_FLOOR).log().float()


@dataclass(frozen=True)
class AudioFeatures:
    """ASTFeatureExtractor's settings: log-mel bins, the frame count every input is padded
    (with zeros, before normalising) or cut to, the one sample rate accepted, and the
    normalisation (AudioSet's statistics by default)."""

    num_mel_bins: int = 128
    max_length: int = 1024
    sampling_rate: int = 16000
    mean: float = -4.2677393
    std: float = 4.5689974
    do_normalize: bool = True

    def __post_init__(self) -> None:
        _check_setting("num_mel_bins", self.num_mel_bins, 1)
        _check_setting("max_length", self.max_length, 1)
        _check_setting("sampling_rate", self.sampling_rate, 1000)
        if not math.isfinite(self.mean) or not math.isfinite(self.std) or self.std <= 0:
            raise ConfigError(f"mean must be finite and std finite and > 0, got mean "
                              f"{self.mean!r}, std {self.std!r}")

    def features(self, waveform: Tensor) -> Tensor:
        """One waveform (N,) -> (max_length, num_mel_bins) float32."""
        x = fbank(waveform, self.sampling_rate, self.num_mel_bins)[: self.max_length]  # (T, M)
        x = torch.nn.functional.pad(x, (0, 0, 0, self.max_length - x.size(0)))
        return (x - self.mean) / (2 * self.std) if self.do_normalize else x

    def __call__(self, waveforms: Sequence[Tensor] | Tensor, *,
                 sampling_rate: int | None = None) -> Tensor:
        """A list of mono waveforms (each (N_i,)), a (B, N) tensor or one (N,) waveform ->
        (B, max_length, num_mel_bins) float32. `sampling_rate`, when given, must be this
        extractor's: resampling is the data loader's job, not a silent step here."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise DataError(f"sampling_rate must be {self.sampling_rate} Hz (the rate these "
                            f"features were set up for; resample first), got {sampling_rate}")
        if isinstance(waveforms, Tensor):
            waveforms = [waveforms] if waveforms.dim() == 1 else list(waveforms)
        if len(waveforms) == 0:
            raise DataError("waveforms must hold at least one waveform, got an empty batch")
        return torch.stack([self.features(w) for w in waveforms])

    def to_dict(self) -> dict[str, Any]:
        return {"feature_extractor_type": "ASTFeatureExtractor", "feature_size": 1,
                "sampling_rate": self.sampling_rate, "num_mel_bins": self.num_mel_bins,
                "max_length": self.max_length, "padding_value": 0.0, "padding_side": "right",
                "do_normalize": self.do_normalize, "mean": self.mean, "std": self.std,
                "return_attention_mask": False}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PREPROCESSOR_NAME
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda t: Path(t).write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> AudioFeatures:
        """The settings in a folder written by attnlab or transformers' ASTFeatureExtractor."""
        path = Path(directory) / PREPROCESSOR_NAME
        if not path.is_file():
            raise MissingFileError(f"{path} not found: the model folder has no audio feature "
                                   "settings")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            kind = values.get("feature_extractor_type", "ASTFeatureExtractor")
            if kind != "ASTFeatureExtractor":
                raise ValueError(f"feature_extractor_type must be 'ASTFeatureExtractor', "
                                 f"got {kind!r}")
            return cls(num_mel_bins=values.get("num_mel_bins", cls.num_mel_bins),
                       max_length=values.get("max_length", cls.max_length),
                       sampling_rate=values.get("sampling_rate", cls.sampling_rate),
                       mean=float(values.get("mean", cls.mean)),
                       std=float(values.get("std", cls.std)),
                       do_normalize=bool(values.get("do_normalize", True)))
        except (ValueError, TypeError, AttributeError) as error:
            raise FolderError(f"{path}: not an audio feature config ({error})") from None
