"""Audio loaders: a folder of class folders of WAV / FLAC files decoded by soundfile, mono,
resampled to 16 kHz (mixed rates allowed), and the errors the issue names: unreadable audio,
empty class folder, one class only, an empty clip."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from attnlab.data import audio
from attnlab.data.audio import AudioSplit, decode_audio, load_audio
from attnlab.errors import ConfigError, DataError, MissingFileError


def _tone(path, freq=440.0, rate=16000, seconds=1.0, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    soundfile.write(path, np.stack([x] * channels, 1) if channels > 1 else x, rate)
    return path


def _dominant(x: torch.Tensor, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def _folder(root, train=4, test=2):
    for c, (name, freq) in enumerate((("high", 1000.0), ("low", 300.0))):
        for i in range(train):
            _tone(root / "train" / name / f"spk{i}_nohash_{c}.wav", freq, seconds=0.5)
        for i in range(test):
            _tone(root / "test" / name / f"t{i}.flac", freq, seconds=0.25)
    return root


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_mixed_rates_come_out_at_16khz_with_the_same_pitch(tmp_path, rate):
    x = decode_audio(_tone(tmp_path / f"a{rate}.wav", 440.0, rate), 16000)
    assert x.dtype == torch.float32 and x.shape == (16000,)
    assert abs(_dominant(x) - 440.0) <= 2.0
    assert abs(x.abs().max().item() - 0.5) < 0.02  # the amplitude survives resampling


def test_stereo_is_mixed_to_mono(tmp_path):
    path = tmp_path / "s.wav"
    t = np.arange(8000) / 16000
    soundfile.write(path, np.stack([np.sin(2 * np.pi * 500 * t), np.zeros_like(t)], 1) * 0.8,
                    16000)
    assert abs(decode_audio(path).abs().max().item() - 0.4) < 0.01


def test_folder_loads_with_speakers_and_rates(tmp_path):
    root = _folder(tmp_path / "data")
    _tone(root / "train" / "low" / "other.wav", 300.0, rate=8000, seconds=0.5)
    _tone(root / "train" / "high" / "cd_1.wav", 1000.0, rate=44100, seconds=0.5)
    splits = load_audio(str(root), valid_fraction=0.25, seed=0)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [8, 2, 4]
    train = splits["train"]
    assert isinstance(train, AudioSplit) and train.classes == ["high", "low"]
    assert all(w.dtype == torch.float32 and w.shape == (8000,) for w in train.waveforms)
    assert splits["valid"].labels.tolist() == [0, 1]
    everything = {src: (spk, rate) for s in splits.values()
                  for src, spk, rate in zip(s.sources, s.speakers, s.sample_rates, strict=True)}
    by_name = {src.rsplit("/", 1)[1]: v for src, v in everything.items()}
    assert by_name["other.wav"] == ("", 8000) and by_name["cd_1.wav"] == ("cd", 44100)
    assert by_name["spk0_nohash_0.wav"] == ("spk0", 16000)
    for split in splits.values():
        for wave, label in zip(split.waveforms, split.labels, strict=True):
            assert abs(_dominant(wave) - (1000.0, 300.0)[label]) < 40
    assert len(splits["test"].waveforms[0]) == 4000
    assert [len(s) for s in load_audio(str(root), sample_rate=8000).values()] == [8, 2, 4]


def test_unreadable_and_empty_audio_are_named(tmp_path):
    root = _folder(tmp_path / "data")
    bad = root / "train" / "low" / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match="broken.wav: not a readable audio file"):
        load_audio(str(root))
    bad.unlink()
    soundfile.write(root / "test" / "high" / "silent.wav", np.zeros(0), 16000)
    with pytest.raises(DataError, match="silent.wav: an empty clip"):
        load_audio(str(root))


@pytest.mark.parametrize("case, message", [
    ("empty class", "train/low: empty class folder"),
    ("one class", "only one class"),
    ("test class not in train", "test/mid: class 'mid' is not in"),
    ("no train", "no train folder"),
])
def test_folder_errors_name_the_place(tmp_path, case, message):
    root = _folder(tmp_path / "data")
    if case == "empty class":
        for f in (root / "train" / "low").iterdir():
            f.unlink()
    elif case == "one class":
        for f in (root / "train" / "low").iterdir():
            f.unlink()
        (root / "train" / "low").rmdir()
    elif case == "test class not in train":
        _tone(root / "test" / "mid" / "x.wav")
    else:
        (root / "train").rename(root / "tr")
    with pytest.raises(DataError, match=message):
        load_audio(str(root))


def test_bad_arguments(tmp_path):
    with pytest.raises(MissingFileError, match="no such folder"):
        load_audio(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="builtin:spoken-words"):
        load_audio("builtin:speech-commands")
    with pytest.raises(ConfigError, match="sample_rate"):
        load_audio(str(tmp_path), sample_rate=0)
    with pytest.raises(DataError, match="x.wav: not a readable audio file"):
        audio.decode_audio(tmp_path / "x.wav")
