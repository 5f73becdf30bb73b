"""`attnlab train audio`: an AST tells tones from chirps end to end, writes a folder
transformers loads with its feature extractor, and `attnlab classify` reads WAV files;
SpecAugment and the time shift are seeded and mask what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from attnlab.cli.main import main
from attnlab.models.auto import from_pretrained
from attnlab.tasks.audio_classification import AudioSettings, spec_augment, time_shifted
from attnlab.training.settings import SettingError

RATE = 16000


def sound(kind: str, rng: np.random.Generator, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = rng.uniform(0.8, 1.25)
    if kind == "low":
        wave = np.sin(2 * np.pi * 300 * f0 * t)
    elif kind == "high":
        wave = np.sin(2 * np.pi * 2500 * f0 * t)
    else:  # a rising chirp
        wave = np.sin(2 * np.pi * (300 + 2500 * t / seconds) * f0 * t)
    return (0.3 * wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_folder(root, per_class=(30, 8), seed=0):
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for kind in ("chirp", "high", "low"):
            folder = root / split / kind
            folder.mkdir(parents=True)
            for i in range(count):
                soundfile.write(folder / f"spk{i % 3}_{i}.wav", sound(kind, rng), RATE)
    return root


def test_learns_sounds_and_every_reader_agrees(tmp_path, capsys):
    data = write_folder(tmp_path / "sounds")
    out = tmp_path / "run"
    assert main(["train", "audio", "--data", str(data), "--out", str(out), "--preset",
                 "ast-tiny", "--set", "num_mel_bins=32", "--set", "max_length=64",
                 "--max-steps", "60", "--batch-size", "16", "--warmup-steps", "5", "--lr",
                 "2e-3", "--save-every", "0", "--freq-mask-width", "4", "--time-mask-width",
                 "6"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["chirp", "high", "low"]
    assert metrics["test_accuracy"] >= 0.8, metrics
    assert (out / "confusion_matrix.png").is_file()

    probe = tmp_path / "probe.wav"
    soundfile.write(probe, sound("high", np.random.default_rng(5)), RATE)
    assert main(["classify", "--model", str(out), str(probe), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["file"] == str(probe)

    transformers = pytest.importorskip("transformers")
    hf = transformers.ASTForAudioClassification.from_pretrained(out).eval()
    extractor = transformers.ASTFeatureExtractor.from_pretrained(out)
    wave, _ = soundfile.read(probe, dtype="float32")
    values = extractor(wave, sampling_rate=RATE, return_tensors="pt")["input_values"]
    model = from_pretrained(out)
    from attnlab.data.model_inputs import model_inputs

    torch.testing.assert_close(model_inputs(out, model.config, [probe]).values, values,
                               atol=2e-3, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(hf(values).logits, model(values).logits, atol=1e-4,
                                   rtol=1e-4)


def test_spec_augment_masks_bands_and_spans():
    x = torch.randn(4, 50, 20)
    masked = spec_augment(x, freq_masks=1, freq_width=5, time_masks=1, time_width=7,
                          generator=torch.Generator().manual_seed(0))
    again = spec_augment(x, freq_masks=1, freq_width=5, time_masks=1, time_width=7,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(masked, again)
    zero = masked == 0
    for i in range(4):
        full_rows = zero[i].all(1).sum()  # masked frames
        full_cols = zero[i].all(0).sum()  # masked mel bins
        assert full_rows <= 7 and full_cols <= 5
        kept = ~zero[i]
        assert torch.equal(masked[i][kept], x[i][kept])
    assert torch.equal(spec_augment(x, freq_masks=0, freq_width=5, time_masks=0, time_width=7,
                                    generator=torch.Generator()), x)


def test_time_shift_rolls_each_example():
    x = torch.arange(2 * 10 * 1, dtype=torch.float).view(2, 10, 1)
    y = time_shifted(x, 3, torch.Generator().manual_seed(0))
    for i in range(2):
        assert any(torch.equal(y[i], x[i].roll(k, 0)) for k in range(-3, 4))


def test_bad_settings_name_the_flag():
    with pytest.raises(SettingError, match="preset must be an audio model"):
        AudioSettings(preset="vit-tiny")
    with pytest.raises(SettingError, match="freq_masks"):
        AudioSettings(freq_masks=-1)
