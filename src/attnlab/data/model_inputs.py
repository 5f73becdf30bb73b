"""Files to the input of an image or audio model folder, the way the folder says: its
preprocessor_config.json (ours or transformers') decides the image size and normalisation, or
the filterbank settings. `attnlab classify`, `attnlab embed` and `attnlab viz` read files
through here; a CLIP folder's image side reads images like a ViT.

    batch = model_inputs("runs/image", model.config, ["shirt.png", "boot.jpg"])
    model(batch.values).logits
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attnlab.errors import DataError

IMAGE_TYPES = ("vit", "deit", "resnet", "clip")
AUDIO_TYPES = ("audio-spectrogram-transformer",)


@dataclass
class ModelInputs:
    kind: str  # "image" or "audio"
    values: Tensor  # (N, C, H, W) pixel values, or (N, frames, mels) filterbanks
    shown: Tensor  # what a person looks at: (N, C, H, W) uint8 images, or (N, frames, mels)
    # unnormalised log-mel filterbanks
    paths: list[str]


def input_kind(config: Any) -> str:
    """"image" or "audio" for a ViT / DeiT / ResNet / CLIP / AST config; DataError for any
    other family."""
    model_type = type(config).model_type
    if model_type in IMAGE_TYPES:
        return "image"
    if model_type in AUDIO_TYPES:
        return "audio"
    raise DataError(f"the model is a {model_type!r}, which reads text; image and audio files "
                    f"need a model of type {', '.join(IMAGE_TYPES + AUDIO_TYPES)}")


def model_inputs(folder: str | Path, config: Any, paths: list[str | Path]) -> ModelInputs:
    """The files in `paths` decoded and prepared as the model in `folder` expects."""
    if not paths:
        raise DataError("no input files given")
    kind = input_kind(config)
    if kind == "image":
        from attnlab.data.images import decode_image
        from attnlab.tokenizers.image_processor import ImageProcessor

        processor = ImageProcessor.load(folder)
        channels = config.num_channels
        if processor.num_channels != channels:
            raise DataError(f"{folder}: preprocessor_config.json normalises "
                            f"{processor.num_channels} channels, the model reads {channels}")
        images = torch.stack([decode_image(p, processor.size, channels)
                              for p in paths])  # (N, C, H, W) uint8
        return ModelInputs(kind, processor(images), images, [str(p) for p in paths])
    from attnlab.data.audio import decode_audio
    from attnlab.tokenizers.audio_features import AudioFeatures

    features = AudioFeatures.load(folder)
    waveforms = [decode_audio(p, features.sampling_rate) for p in paths]
    values = features(waveforms)  # (N, frames, mels)
    shown = values * (2 * features.std) + features.mean if features.do_normalize else values
    return ModelInputs(kind, values, shown, [str(p) for p in paths])
