"""A spoken-words corpus synthesised offline with Debian's `espeak-ng` (the eSpeak NG formant
synthesiser), modelled on the 20 core words of Speech Commands (Warden, 2018: "yes", "no",
"up", ..., "zero" ... "nine"; one-second 16 kHz clips of one word each).

A speaker is an espeak-ng English voice (an accent's pronunciation rules: en-us, en-gb-x-rp,
en-gb-scotland, en-029, ...) combined with a voice variant (a timbre: +m3, +f2, +klatt,
+whisper, ...), with its own base speed and pitch drawn from a seeded generator; each clip
jitters that speed and pitch, is trimmed of espeak's silence, resampled from 22,050 Hz to
16 kHz (scipy's polyphase `resample_poly`), placed at a random offset in one second, mixed with
Gaussian noise (white, or low-passed by a random one-pole filter) at a random SNR and scaled
to a random peak. `speaker_split` holds out whole speakers: test (and valid) speakers never
speak in train (their accent and their timbre each also occur in train, in other
combinations; the combination, speed and pitch are new).

The corpus is written once to `${ATTNLAB_CACHE:-~/.cache/attnlab}/spoken-words-v1/KEY.npz`
(int16 waveforms, atomic write), KEY hashing every setting, so a changed setting regenerates
and later runs load it in a few seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import lfilter, resample_poly
from tqdm import tqdm

from attnlab.errors import ConfigError, DataError, MissingFileError
from attnlab.serialization import atomic_write

log = logging.getLogger(__name__)

VERSION = 1  # bump when the synthesis changes in a way the settings do not show
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
         "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
          "en-029", "en-us-nyc")
# espeak-ng's variants (`espeak-ng --voices=variant`), less those that stretch a word past one
# second at our slowest speed (Marco, AnxiousAndy) or garble it (Demonic).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "whisper", "whisperf",
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene",
    "Gene2", "gustave", "announcer", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4",
    "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Mario", "max", "Michael",
    "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "steph", "steph2",
    "steph3", "Storm", "Tweaky", "UniRobot", "zac", "anika", "anikaRobot", "grandpa",
    "grandma", "norbert", "sandro", "shelby", "travis", "victor")
ESPEAK_RATE = 22050  # Hz, what espeak-ng writes
TEST_FRACTION = 0.2  # of the speakers
TEST_SEED = 0  # the test speakers are fixed: scores from different seeds compare


@dataclass(frozen=True)
class SpokenWordsSettings:
    """What the corpus is made of; every field is part of the cache key."""

    words: tuple[str, ...] = WORDS
    voices: tuple[str, ...] = VOICES
    variants: tuple[str, ...] = VARIANTS
    speakers: int = 240  # voice+variant combinations drawn (each says every word `takes` times)
    takes: int = 1
    seed: int = 0
    sample_rate: int = 16000
    clip_seconds: float = 1.0
    speed: tuple[int, int] = (140, 190)  # words per minute, a speaker's base (uniform)
    pitch: tuple[int, int] = (25, 75)  # espeak-ng 0..99, a speaker's base (uniform)
    jitter: tuple[int, int] = (15, 8)  # per clip, +- speed and +- pitch around the base
    snr_db: tuple[float, float] = (10.0, 40.0)  # speech-to-noise power ratio (uniform)

    def key(self) -> str:
        text = json.dumps({"version": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT_SETTINGS = SpokenWordsSettings()  # what builtin:spoken-words is


@dataclass(frozen=True)
class SpokenWords:
    """The corpus: one clip per row."""

    waveforms: np.ndarray  # (N, clip samples) int16
    labels: np.ndarray  # (N,) int64, index into words
    words: tuple[str, ...]
    speakers: list[str]  # per clip, "voice+variant"
    sample_rate: int
    path: Path  # the cache file it was read from


def cache_root() -> Path:
    return Path(os.environ.get("ATTNLAB_CACHE") or Path.home() / ".cache" / "attnlab")


def cache_path(settings: SpokenWordsSettings) -> Path:
    return cache_root() / f"spoken-words-v{VERSION}" / f"{settings.key()}.npz"


def _check(settings: SpokenWordsSettings) -> None:
    combos = len(settings.voices) * len(settings.variants)
    if len(settings.words) < 2 or len(set(settings.words)) != len(settings.words):
        raise ConfigError(f"words must be two or more distinct words, got {settings.words}")
    if not 3 <= settings.speakers <= combos:
        raise ConfigError(f"speakers must be in [3, {combos}] (voices x variants), got "
                          f"{settings.speakers}")
    if settings.takes < 1:
        raise ConfigError(f"takes must be >= 1, got {settings.takes}")


def _jobs(settings: SpokenWordsSettings) -> tuple[list[dict], list[str]]:
    """Every clip's parameters, drawn in one fixed order (so threads cannot change them)."""
    rng = np.random.default_rng(settings.seed)
    combos = [f"{v}+{var}" for v in settings.voices for var in settings.variants]
    chosen = sorted(rng.choice(len(combos), settings.speakers, replace=False).tolist())
    speakers = [combos[i] for i in chosen]
    jobs = []
    for speaker in speakers:
        speed, pitch = rng.integers(*settings.speed), rng.integers(*settings.pitch)
        for label, word in enumerate(settings.words):
            for _ in range(settings.takes):
                ds, dp = settings.jitter
                jobs.append({
                    "speaker": speaker, "word": word, "label": label,
                    "speed": int(speed + rng.integers(-ds, ds + 1)),
                    "pitch": int(np.clip(pitch + rng.integers(-dp, dp + 1), 0, 99)),
                    "snr": float(rng.uniform(*settings.snr_db)),
                    "offset": float(rng.uniform()), "peak": float(rng.uniform(0.25, 0.9)),
                    "colour": float(rng.uniform(0.5, 0.98)) if rng.uniform() < 0.5 else 0.0,
                    "noise_seed": int(rng.integers(2**31))})
    return jobs, speakers


def _trim(x: np.ndarray, rate: int) -> np.ndarray:
    """x without espeak-ng's leading and trailing silence (below 2% of the peak), 10 ms kept."""
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    pad = rate // 100
    return x[max(loud[0] - pad, 0): loud[-1] + pad + 1]


def _synthesise(job: dict, settings: SpokenWordsSettings) -> tuple[np.ndarray, bool]:
    """(one clip (samples,) int16, whether the word had to be cut to fit the clip)."""
    command = ["espeak-ng", "-v", job["speaker"], "-s", str(job["speed"]), "-p",
               str(job["pitch"]), "--stdout", job["word"]]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    try:
        x, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float64")
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise DataError(f"`{' '.join(command)}` gave no audio (exit {done.returncode}: "
                        f"{done.stderr.decode(errors='replace').strip() or error}); "
                        "reinstall espeak-ng") from None
    if x.ndim > 1:
        x = x.mean(axis=1)
    if not np.abs(x).max() > 0:
        raise DataError(f"`{' '.join(command)}` gave a silent clip; reinstall espeak-ng")
    x = _trim(x, rate)
    g = gcd(settings.sample_rate, rate)
    speech = resample_poly(x, settings.sample_rate // g, rate // g)
    n = round(settings.clip_seconds * settings.sample_rate)
    cut = len(speech) > n
    speech = speech[:n] / np.abs(speech).max()
    rng = np.random.default_rng(job["noise_seed"])
    noise = rng.standard_normal(n)
    if job["colour"]:
        noise = lfilter([1.0], [1.0, -job["colour"]], noise)  # one-pole low-pass: redder noise
    power = np.mean(speech**2) / 10 ** (job["snr"] / 10)
    clip = noise * np.sqrt(power / np.mean(noise**2))
    start = int(job["offset"] * (n - len(speech)))
    clip[start:start + len(speech)] += speech
    clip *= job["peak"] / np.abs(clip).max()
    return np.round(clip * 32767).astype(np.int16), cut


def _espeak_version() -> str:
    if shutil.which("espeak-ng") is None:
        raise MissingFileError("builtin:spoken-words is synthesised with espeak-ng, which is not "
                               "installed; install it with `sudo apt-get install espeak-ng` (or "
                               "`make packages`)")
    done = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                          check=False)
    return done.stdout.split("Data at")[0].strip()  # "eSpeak NG text-to-speech: 1.51"


def synthesise(settings: SpokenWordsSettings, path: Path, *, workers: int = 2,
               progress: bool = True) -> None:
    """Synthesise the corpus of `settings` into the .npz file `path` (atomically)."""
    _check(settings)
    espeak = _espeak_version()
    jobs, _ = _jobs(settings)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        clips = list(tqdm(pool.map(lambda job: _synthesise(job, settings), jobs),
                          total=len(jobs), desc=f"synthesising {len(jobs)} spoken words",
                          unit="clip", disable=not progress))
    cut = sum(c for _, c in clips)
    seconds = time.perf_counter() - start
    log.info("spoken words: %d clips in %.1f s (%s), %d cut to %.1f s", len(jobs), seconds,
             espeak, cut, settings.clip_seconds)
    meta = {"settings": asdict(settings), "version": VERSION, "espeak_ng": espeak,
            "seconds": round(seconds, 1), "cut": cut}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, waveforms=np.stack([c for c, _ in clips]),
                     labels=np.array([j["label"] for j in jobs], dtype=np.int64),
                     speakers=np.array([j["speaker"] for j in jobs]),
                     words=np.array(settings.words), meta=np.array(json.dumps(meta)))

    atomic_write(path, write)


def spoken_words(settings: SpokenWordsSettings | None = None, *, workers: int = 2,
                 progress: bool = True) -> SpokenWords:
    """The corpus of `settings` (default: 20 words x 240 speakers), synthesised on first use
    and read from the cache after that."""
    settings = settings or DEFAULT_SETTINGS
    _check(settings)
    path = cache_path(settings)
    if not path.is_file():
        synthesise(settings, path, workers=workers, progress=progress)
    with np.load(path) as data:
        return SpokenWords(data["waveforms"], data["labels"], tuple(data["words"].tolist()),
                           data["speakers"].tolist(), settings.sample_rate, path)


def speaker_split(speakers: list[str], valid_fraction: float, seed: int
                  ) -> dict[str, list[int]]:
    """Split -> clip rows, by speaker: TEST_FRACTION of the speakers (fixed, whatever `seed`)
    are the test split, `valid_fraction` of them (chosen by `seed` among the rest) valid, at
    least one speaker each."""
    names = sorted(set(speakers))
    if len(names) < 3:
        raise DataError(f"spoken words: {len(names)} speaker(s); a speaker split needs 3")
    order = np.random.default_rng(TEST_SEED).permutation(len(names))
    n_test = max(1, round(len(names) * TEST_FRACTION))
    test = {names[i] for i in order[:n_test]}
    rest = [names[i] for i in order[n_test:]]
    n_valid = min(len(rest) - 1, max(1, round(len(names) * valid_fraction)))
    valid = {rest[i] for i in np.random.default_rng(seed).permutation(len(rest))[:n_valid]}
    split_of = {s: "test" if s in test else "valid" if s in valid else "train" for s in names}
    rows: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, speaker in enumerate(speakers):
        rows[split_of[speaker]].append(i)
    return rows
