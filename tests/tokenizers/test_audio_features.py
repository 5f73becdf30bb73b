"""AST's log-mel features against Hugging Face's ASTFeatureExtractor (the oracle: its numpy
Kaldi path, torchaudio being absent): noise and a chirp, inputs shorter and longer than
max_length, refused inputs, and preprocessor_config.json read by both sides."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from attnlab.errors import ConfigError, DataError, FolderError, MissingFileError, UserError
from attnlab.tokenizers.audio_features import AudioFeatures, fbank, frame_sizes

transformers = pytest.importorskip("transformers")


def hf_extractor(**values):
    with warnings.catch_warnings():  # "at least one mel filter has all zero values" (128 bins)
        warnings.simplefilter("ignore")
        return transformers.ASTFeatureExtractor(**values)


def hf_features(extractor, waveform: torch.Tensor) -> torch.Tensor:
    out = extractor(waveform.numpy(), sampling_rate=16000, return_tensors="np")
    return torch.from_numpy(out["input_values"][0])  # (max_length, mels)


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def chirp(n: int) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / 16000
    return (0.5 * torch.sin(2 * math.pi * (100 * t + 1500 * t * t))).float()  # 100 Hz -> 3.1 kHz


@pytest.mark.parametrize("num_mel_bins", [128, 64])
@pytest.mark.parametrize("signal", ["noise", "chirp"])
@pytest.mark.parametrize("n", [400, 4321, 16000, 40000], ids=lambda n: f"{n}samples")
def test_log_mel_equals_ast_feature_extractor(signal, n, num_mel_bins):
    """Raw log-mel (no normalisation): 40,000 samples = 248 frames, cut to max_length 200;
    the shorter ones are padded with zeros."""
    waveform = noise(n) if signal == "noise" else chirp(n)
    settings = dict(num_mel_bins=num_mel_bins, max_length=200, do_normalize=False)
    expected = hf_features(hf_extractor(**settings), waveform)
    got = AudioFeatures(**settings)([waveform])
    assert got.shape == (1, 200, num_mel_bins) and got.dtype == torch.float32
    torch.testing.assert_close(got[0], expected, atol=1e-4, rtol=0)
    frames = 1 + (n - 400) // 160
    assert torch.equal(got[0, frames:], torch.zeros_like(got[0, frames:]))


def test_normalised_batch_equals_ast_feature_extractor():
    waveforms = [noise(12345, seed=1), chirp(30000), noise(401, seed=2)]
    extractor = hf_extractor(max_length=128)
    expected = torch.stack([hf_features(extractor, w) for w in waveforms])
    got = AudioFeatures(max_length=128)(waveforms, sampling_rate=16000)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    padded = (0 - (-4.2677393)) / (2 * 4.5689974)  # zeros padded before normalising, as HF
    assert got[2, -1, 0].item() == pytest.approx(padded, abs=1e-6)


def test_fbank_frames_follow_kaldi_snip_edges():
    assert frame_sizes(16000) == (400, 160, 512)
    assert fbank(noise(400)).shape == (1, 128)
    assert fbank(noise(16000), num_mel_bins=23).shape == (1 + (16000 - 400) // 160, 23)
    silence = fbank(torch.zeros(1000))  # energies floored at float32 epsilon, no -inf
    assert torch.allclose(silence, torch.full_like(silence, math.log(2.0 ** -23)))


def test_a_louder_copy_shifts_the_log_mel_by_log_gain_squared():
    w = noise(8000)
    quiet, loud = fbank(w, num_mel_bins=64), fbank(3 * w, num_mel_bins=64)
    assert quiet.min() > math.log(2.0 ** -23) + 1  # above the energy floor everywhere
    torch.testing.assert_close(loud, quiet + math.log(9), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(0), "at least one 25 ms frame \\(400 samples at 16000 Hz\\), got 0"),
    (torch.zeros(399), "got 399 samples"),
    (torch.zeros(2, 800), r"shape \(N,\), got shape \(2, 800\)"),
    (torch.zeros(800, dtype=torch.int16), "float tensor of samples, got torch.int16"),
    (torch.full((800,), float("nan")), "finite samples"),
])
def test_bad_waveforms_are_named(bad, match):
    with pytest.raises(DataError, match=match):
        fbank(bad)


def test_another_sampling_rate_is_refused_naming_it():
    features = AudioFeatures(max_length=10)
    with pytest.raises(DataError, match="sampling_rate must be 16000 Hz .* got 8000"):
        features([noise(8000)], sampling_rate=8000)
    with pytest.raises(DataError, match="empty batch"):
        features([])
    assert features(noise(3000)).shape == (1, 10, 128)  # one waveform is a batch of one


@pytest.mark.parametrize("values, match", [
    (dict(num_mel_bins=0), "num_mel_bins must be an integer >= 1, got 0"),
    (dict(max_length=2.5), "max_length must be an integer >= 1, got 2.5"),
    (dict(std=0.0), "std finite and > 0"),
])
def test_bad_settings_are_named(values, match):
    with pytest.raises(ConfigError, match=match):
        AudioFeatures(**values)


def test_save_load_round_trip_and_transformers_reads_it(tmp_path):
    features = AudioFeatures(num_mel_bins=64, max_length=100, mean=-3.5, std=2.25)
    path = features.save(tmp_path)
    assert path.name == "preprocessor_config.json"
    assert AudioFeatures.load(tmp_path) == features
    hf = transformers.ASTFeatureExtractor.from_pretrained(tmp_path)
    assert (hf.num_mel_bins, hf.max_length, hf.mean, hf.std, hf.sampling_rate) == (
        64, 100, -3.5, 2.25, 16000)
    w = chirp(20000)
    torch.testing.assert_close(features([w])[0], hf_features(hf, w), atol=1e-4, rtol=0)


def test_loads_a_transformers_folder_and_names_bad_files(tmp_path):
    hf_extractor(num_mel_bins=32, max_length=50, do_normalize=False).save_pretrained(tmp_path)
    assert AudioFeatures.load(tmp_path) == AudioFeatures(32, 50, do_normalize=False)
    with pytest.raises(MissingFileError, match="preprocessor_config.json not found"):
        AudioFeatures.load(tmp_path / "nothing")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "WhisperFeatureExtractor"}))
    with pytest.raises(FolderError, match="'WhisperFeatureExtractor'"):
        AudioFeatures.load(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"max_length": -1}')
    with pytest.raises(UserError, match="max_length must be an integer >= 1, got -1"):
        AudioFeatures.load(tmp_path)
