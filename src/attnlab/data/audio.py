"""Labelled audio clips for the Audio Spectrogram Transformer (Gong, Chung and Glass, 2021):
mono float32 waveforms at one sample rate (16 kHz, as AST and Speech Commands use).

- `builtin:spoken-words`: 20 English words spoken by 240 synthetic espeak-ng speakers, split
  by speaker (`data/spoken_words.py`): test and valid speakers never occur in train.
- a folder: `DIR/train/<class>/*.wav|flac|ogg`, `DIR/test/<class>/...` and an optional
  `DIR/valid/<class>/...` (else `valid_fraction` of train per class, seeded, chosen by file, not
  by speaker: give `DIR/valid` for speaker-disjoint validation). Files are decoded by
  `soundfile` (libsndfile), averaged to mono and resampled to `sample_rate` with scipy's
  polyphase `resample_poly`; files may differ in sample rate (each is resampled; the rates are
  kept in `AudioSplit.sample_rates`). A clip's speaker is its file name up to the first "_"
  (the Speech Commands naming, `SPEAKER_nohash_0.wav`), or "" for a name without "_".
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly
from torch import Tensor
from tqdm import tqdm

from attnlab.data import spoken_words
from attnlab.data.class_folders import (
    builtin_name,
    check_fraction,
    scan_class_folders,
    stratified_split,
)
from attnlab.errors import ConfigError, DataError

__all__ = ["AudioSplit", "load_audio", "decode_audio", "read_audio", "resample",
           "BUILTIN_AUDIO_SETS", "AUDIO_EXTENSIONS"]

log = logging.getLogger(__name__)

BUILTIN_AUDIO_SETS = ("spoken-words",)
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg"})
PROGRESS_OVER = 1000  # files: decoding more than this shows a progress bar


@dataclass
class AudioSplit:
    """One split: clips with their labels, files and speakers."""

    waveforms: list[Tensor]  # each (N_i,) float32 mono at the loader's sample rate
    labels: Tensor  # (N,) int64, index into classes
    classes: list[str]  # index -> class name (the same list in every split)
    sources: list[str]  # per clip: a file path, or "spoken-words:123"
    speakers: list[str]  # per clip: "voice+variant", a file name prefix, or ""
    sample_rates: list[int] = field(default_factory=list)  # per clip: the file's own rate

    def __len__(self) -> int:
        return len(self.labels)


def resample(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """(n,) at `rate` -> (m,) float32 at `sample_rate` (polyphase, scipy's Kaiser window)."""
    if rate == sample_rate:
        return x.astype(np.float32, copy=False)
    g = gcd(rate, sample_rate)
    return resample_poly(x, sample_rate // g, rate // g).astype(np.float32)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """((n,) float32 mono, the file's sample rate); an unreadable file or an empty or
    non-finite clip is a DataError naming it."""
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as error:
        raise DataError(f"{path}: not a readable audio file ({error}); replace or remove the "
                        "file (WAV, FLAC or Ogg Vorbis)") from None
    if x.shape[0] == 0:
        raise DataError(f"{path}: an empty clip (0 samples); remove the file")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: holds samples that are NaN or infinite; replace the file")
    return x.mean(axis=1), int(rate)


def decode_audio(path: str | Path, sample_rate: int = 16000) -> Tensor:
    """(N,) float32: the file at `path`, mono, resampled to `sample_rate`."""
    _check_rate(sample_rate)
    x, rate = read_audio(path)
    return torch.from_numpy(resample(x, rate, sample_rate))


def speaker_of(path: Path) -> str:
    """The file name up to the first "_" ("" when there is none)."""
    name, sep, _ = path.stem.partition("_")
    return name if sep else ""


def _check_rate(sample_rate: int) -> None:
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate}")


def load_audio(spec: str, *, sample_rate: int = 16000, valid_fraction: float = 0.1,
               seed: int = 0) -> dict[str, AudioSplit]:
    """Splits "train", "valid", "test" of `spec` ("builtin:spoken-words" or a folder of class
    folders), every clip mono float32 at `sample_rate`; `seed` chooses the validation clips
    (or speakers) carved out of train."""
    check_fraction(valid_fraction)
    _check_rate(sample_rate)
    if builtin_name(spec, BUILTIN_AUDIO_SETS) == "spoken-words":
        return _spoken_words(sample_rate, valid_fraction, seed)
    folders = scan_class_folders(spec, AUDIO_EXTENSIONS, "audio")
    total = sum(len(f) for f in folders.files.values())
    bar = tqdm(total=total, desc=f"decoding {total} clips", unit="clip",
               disable=total <= PROGRESS_OVER)
    splits = {}
    for split, files in folders.files.items():
        waves, rates = [], []
        for path in files:
            x, rate = read_audio(path)
            waves.append(torch.from_numpy(resample(x, rate, sample_rate)))
            rates.append(rate)
            bar.update()
        splits[split] = AudioSplit(waves, torch.tensor(folders.labels[split]), folders.classes,
                                   [str(p) for p in files], [speaker_of(p) for p in files],
                                   rates)
    bar.close()
    rates = Counter(r for s in splits.values() for r in s.sample_rates)
    if set(rates) != {sample_rate}:
        log.info("%s: resampled to %d Hz from the files' rates %s", spec, sample_rate,
                 dict(sorted(rates.items())))
    if "valid" not in splits:
        train = splits["train"]
        kept, held = stratified_split(train.labels.tolist(), valid_fraction, seed)
        splits["valid"], splits["train"] = _take(train, held), _take(train, kept)
    return {split: splits[split] for split in ("train", "valid", "test")}


def _take(split: AudioSplit, rows: list[int]) -> AudioSplit:
    index = torch.tensor(rows, dtype=torch.long)
    return AudioSplit([split.waveforms[i] for i in rows], split.labels[index], split.classes,
                      [split.sources[i] for i in rows], [split.speakers[i] for i in rows],
                      [split.sample_rates[i] for i in rows] if split.sample_rates else [])


def _spoken_words(sample_rate: int, valid_fraction: float, seed: int) -> dict[str, AudioSplit]:
    corpus = spoken_words.spoken_words(spoken_words.DEFAULT_SETTINGS)
    waves = torch.from_numpy(corpus.waveforms.astype(np.float32) / 32768.0)  # (N, samples)
    rows = spoken_words.speaker_split(corpus.speakers, valid_fraction, seed)
    classes = list(corpus.words)
    splits = {}
    for split, index in rows.items():
        clips = [waves[i] for i in index]
        if sample_rate != corpus.sample_rate:
            clips = [torch.from_numpy(resample(c.numpy(), corpus.sample_rate, sample_rate))
                     for c in clips]
        splits[split] = AudioSplit(clips, torch.as_tensor(corpus.labels[index]), classes,
                                   [f"spoken-words:{i}" for i in index],
                                   [corpus.speakers[i] for i in index],
                                   [corpus.sample_rate] * len(index))
    return splits
