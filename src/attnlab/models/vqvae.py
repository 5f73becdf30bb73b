"""A VQ-VAE (van den Oord, Vinyals and Kavukcuoglu 2017, "Neural Discrete Representation
Learning", sec. 3 and 4.2): the discrete image tokenizer of the text-to-image model (DALL-E,
Ramesh et al. 2021, stage one, with a VQ-VAE in place of its dVAE), codebook learned by EMA
(Razavi et al. 2019) with dead codes restarted (`attnlab.nn.vector_quantizer`).

Encoder (sec. 4.2 at small scale): log2(downsample) convolutions 4x4 with stride 2 and ReLU,
a 3x3 convolution, residual blocks (ReLU, 3x3 conv, ReLU, 1x1 conv, plus the input), ReLU and a
1x1 convolution to `code_dim`; each of the (image_size / downsample)^2 vectors becomes its
nearest code. The decoder mirrors it: a 3x3 convolution from the codes, residual blocks, ReLU,
transposed convolutions 4x4 with stride 2. Pixels are read and written in [-1, 1]
(`to_unit` / `to_pixels`); the decoder's last layer is linear (trained on the MSE as it is,
clamped to [-1, 1] in the reconstruction it returns).

    model = build_model("vqvae-scenes")
    out = model(to_unit(images_uint8))        # out.loss, out.codes (B, 8, 8), out.reconstruction
    codes = model.encode(pixels)              # (B, h, w) long, the image's tokens
    pixels = to_pixels(model.decode(codes))   # (B, C, H, W) uint8
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError, DataError
from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.models.common import PretrainedModel, check_pixel_batch
from attnlab.nn.vector_quantizer import VectorQuantizer

SIZE_BOUNDS = {"image_size": 2**16, "num_channels": 2**10, "hidden_channels": 2**14,
               "downsample": 2**10, "res_blocks": 2**10, "codebook_size": 2**22,
               "code_dim": 2**16, "restart_after": 2**31}


@dataclass(frozen=True)
class VQVAEConfig:
    """Hyperparameters (defaults: 32 x 32 RGB images to 8 x 8 codes of a 256-code book)."""

    model_type: ClassVar[str] = "vqvae"

    image_size: int = 32
    num_channels: int = 3
    hidden_channels: int = 64  # the residual blocks' inner width is half of it
    downsample: int = 4  # a power of two: the codes' grid is image_size // downsample per side
    res_blocks: int = 2  # in the encoder, and as many in the decoder (0: none)
    codebook_size: int = 256  # K
    code_dim: int = 64  # D
    beta: float = 0.25  # weight of the commitment loss (sec. 3.2: 0.25)
    ema_decay: float = 0.99  # of the codebook's moving averages (Razavi et al. 2019: 0.99)
    restart_after: int = 100  # training steps a code may go unchosen before it is restarted

    def __post_init__(self) -> None:
        for name, bound in SIZE_BOUNDS.items():
            value, low = getattr(self, name), 0 if name == "res_blocks" else 1
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            if not low <= value <= bound:
                raise ConfigError(f"{name}={value} is outside the sane range [{low}, {bound:,}]")
        if self.downsample & (self.downsample - 1):
            raise ConfigError(f"downsample must be a power of two (1, 2, 4, ...), got "
                              f"{self.downsample}")
        if self.image_size % self.downsample:
            raise ConfigError(f"image_size={self.image_size} must be a multiple of "
                              f"downsample={self.downsample}")
        if not (isinstance(self.beta, int | float) and 0.0 <= self.beta <= 1e3):
            raise ConfigError(f"beta must be a number in [0, 1000], got {self.beta!r}")
        if not (isinstance(self.ema_decay, int | float) and 0.0 <= self.ema_decay < 1.0):
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample
        return side, side


@dataclass
class VQVAEOutput:
    reconstruction: Tensor  # (B, C, H, W) in [-1, 1]
    codes: Tensor  # (B, h, w) long
    loss: Tensor  # reconstruction MSE + beta * commitment
    reconstruction_loss: Tensor  # MSE on the [-1, 1] scale
    commitment_loss: Tensor  # mean (z - sg(e))^2
    perplexity: Tensor  # exp(entropy) of the batch's codes
    usage: Tensor  # (K,) long: vectors per code in the batch


class ResidualBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) (van den Oord et al. 2017, sec. 4.2)."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inner, 3, padding=1)
        self.conv2 = nn.Conv2d(inner, channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> same
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def stage_channels(c: VQVAEConfig) -> list[int]:
    """Channels after each stride-2 convolution of the encoder: half width, the last full."""
    stages = c.downsample.bit_length() - 1
    return [max(1, c.hidden_channels // 2)] * (stages - 1) + [c.hidden_channels] * (stages > 0)


def encoder(c: VQVAEConfig) -> nn.Sequential:
    """(B, C, H, W) -> (B, code_dim, H / downsample, W / downsample)."""
    layers: list[nn.Module] = []
    c_in = c.num_channels
    for c_out in stage_channels(c):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, c.hidden_channels, 3, padding=1))
    layers += [ResidualBlock(c.hidden_channels, max(1, c.hidden_channels // 2))
               for _ in range(c.res_blocks)]
    layers += [nn.ReLU(), nn.Conv2d(c.hidden_channels, c.code_dim, 1)]
    return nn.Sequential(*layers)


def decoder(c: VQVAEConfig) -> nn.Sequential:
    """(B, code_dim, h, w) -> (B, C, h * downsample, w * downsample), unbounded."""
    layers: list[nn.Module] = [nn.Conv2d(c.code_dim, c.hidden_channels, 3, padding=1)]
    layers += [ResidualBlock(c.hidden_channels, max(1, c.hidden_channels // 2))
               for _ in range(c.res_blocks)]
    layers.append(nn.ReLU())
    widths = stage_channels(c)[::-1]  # (hidden, half, half, ...)
    if not widths:
        layers.append(nn.Conv2d(c.hidden_channels, c.num_channels, 3, padding=1))
    for i, c_in in enumerate(widths):
        last = i == len(widths) - 1
        c_out = c.num_channels if last else widths[i + 1]
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VQVAE(PretrainedModel):
    """forward(pixel_values (B, C, H, W) float in [-1, 1]) -> VQVAEOutput; `encode` to codes,
    `decode` from them. Saved in attnlab's layout (transformers has no VQ-VAE)."""

    config_class = VQVAEConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # reads images, generates nothing itself
    main_input_name: ClassVar[str] = "pixel_values"

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = encoder(c)
        self.quantizer = VectorQuantizer(c.codebook_size, c.code_dim, decay=c.ema_decay,
                                         restart_after=c.restart_after)
        self.decoder = decoder(c)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @torch.no_grad()
    def start_output_at(self, mean: Tensor) -> None:
        """Set the decoder's output bias to `mean` (C,) on the [-1, 1] scale, the training
        images' mean colour: the first steps then learn the pictures, not the background level
        (a bias moves by about the learning rate per Adam step, so from 0 to a white or black
        background takes hundreds of steps)."""
        last = self.decoder[-1]
        if mean.shape != last.bias.shape:
            raise DataError(f"mean must have one value per channel, shape "
                            f"{tuple(last.bias.shape)}, got {tuple(mean.shape)}")
        last.bias.copy_(mean.to(last.bias))

    def check_pixels(self, pixel_values: Tensor) -> None:
        c = self.config
        check_pixel_batch(pixel_values, c.num_channels)
        if pixel_values.shape[2:] != (c.image_size, c.image_size):
            raise DataError(f"pixel_values must be {c.image_size}x{c.image_size} images (the "
                            f"model's image_size), got {tuple(pixel_values.shape)}")

    def features(self, pixel_values: Tensor) -> Tensor:
        """(B, C, H, W) -> the encoder's vectors (B, h, w, D), before quantisation."""
        self.check_pixels(pixel_values)
        x = pixel_values.to(self.encoder[0].weight.dtype)
        return self.encoder(x).permute(0, 2, 3, 1)  # (B, h, w, D)

    def forward(self, pixel_values: Tensor) -> VQVAEOutput:
        z = self.features(pixel_values)  # (B, h, w, D)
        q = self.quantizer(z)
        raw = self.decoder(q.quantized.permute(0, 3, 1, 2))  # (B, C, H, W)
        recon_loss = F.mse_loss(raw.float(), pixel_values.float())
        loss = recon_loss + self.config.beta * q.commitment_loss
        return VQVAEOutput(raw.clamp(-1.0, 1.0), q.codes, loss, recon_loss, q.commitment_loss,
                           q.perplexity, q.usage)

    @torch.no_grad()
    def encode(self, pixel_values: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, h, w) long codes (never changes the codebook; no
        autograd graph: codes carry no gradient)."""
        return self.quantizer.nearest(self.features(pixel_values))

    def decode(self, codes: Tensor) -> Tensor:
        """(B, h, w) long codes -> (B, C, H, W) images in [-1, 1]."""
        h, w = self.grid
        if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.dtype == (
                torch.bool) or codes.dim() != 3 or codes.shape[1:] != (h, w):
            raise DataError(f"codes must be integer (batch, {h}, {w}) tensors, got "
                            f"{getattr(codes, 'dtype', type(codes).__name__)} "
                            f"{tuple(getattr(codes, 'shape', ()))}")
        if codes.numel() and (int(codes.min()) < 0
                              or int(codes.max()) >= self.config.codebook_size):
            raise DataError(f"codes must be in [0, codebook_size={self.config.codebook_size}),"
                            f" got values in [{int(codes.min())}, {int(codes.max())}]")
        vectors = self.quantizer.lookup(codes.long())  # (B, h, w, D)
        return self.decoder(vectors.permute(0, 3, 1, 2)).clamp(-1.0, 1.0)


def to_unit(pixels: Tensor) -> Tensor:
    """uint8 pixels (any shape) -> float in [-1, 1] (0 -> -1, 255 -> 1)."""
    if not isinstance(pixels, Tensor) or pixels.dtype != torch.uint8:
        raise DataError(f"pixels must be a uint8 tensor, got "
                        f"{getattr(pixels, 'dtype', type(pixels).__name__)}")
    return pixels.float() / 127.5 - 1.0


def to_pixels(unit: Tensor) -> Tensor:
    """float in [-1, 1] (any shape) -> uint8 pixels, clamped and rounded."""
    if not isinstance(unit, Tensor) or not unit.is_floating_point():
        raise DataError(f"unit must be a float tensor, got "
                        f"{getattr(unit, 'dtype', type(unit).__name__)}")
    return ((unit.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


__all__ = ["VQVAE", "ResidualBlock", "VQVAEConfig", "VQVAEOutput", "to_pixels", "to_unit"]
