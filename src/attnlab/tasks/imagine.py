"""The text-to-image pipeline (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation", sec. 2.3
and 2.4), used by `attnlab train text2image` for its final metrics and by `attnlab imagine`.

caption -> the caption tokenizer (framed, padded to the model's text_len) -> the decoder samples
grid x grid image codes (top-k, temperature, seeded, KV cache: `model.generate`) -> the VQ-VAE
decodes them to pixels. N samples per caption can be reranked by CLIP (Radford et al. 2021): the
cosine of the caption's and each image's embeddings, as the paper reranked its samples with a
contrastive model.

    pipeline = load_pipeline("runs/t2i")                # model, tokenizer.json, image_tokenizer/
    images = imagine(pipeline, ["a small five"], 8)     # (1, 8, C, H, W) uint8
    order, scores = rerank("runs/clip", ["a small five"], images)  # best first
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError, DataError, FolderError, MissingFileError
from attnlab.io import load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.models.clip import CLIP
from attnlab.models.text2image import TextToImage
from attnlab.models.vqvae import VQVAE, to_pixels
from attnlab.tokenizers import Tokenizer
from attnlab.tokenizers.captions import encode_captions
from attnlab.tokenizers.image_processor import ImageProcessor, fit_pixels

log = logging.getLogger(__name__)

IMAGE_TOKENIZER = "image_tokenizer"  # the VQ-VAE's folder inside a text-to-image run folder


@dataclass
class Pipeline:
    model: TextToImage
    tokenizer: Tokenizer  # the caption tokenizer
    image_tokenizer: VQVAE

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.image_tokenizer.config
        return c.num_channels, c.image_size, c.image_size


@dataclass
class ClipScorer:
    """A CLIP model with the caption tokenizer and image processor of its folder."""

    model: CLIP
    tokenizer: Tokenizer
    processor: ImageProcessor


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_image_tokenizer(model: TextToImage, vq: VQVAE, where: str) -> None:
    """The decoder's image vocabulary and grid must be the VQ-VAE's."""
    c = model.config
    if vq.config.codebook_size != c.image_vocab_size or vq.grid != (c.grid, c.grid):
        raise FolderError(f"{where}: the image tokenizer has {vq.config.codebook_size} codes on "
                          f"a {vq.grid[0]}x{vq.grid[1]} grid, the model expects "
                          f"{c.image_vocab_size} codes on {c.grid}x{c.grid}")


def load_folder_as(directory: Path, kind: type, what: str, expected: str) -> nn.Module:
    if not directory.is_dir():
        raise MissingFileError(f"{what}: no folder {directory}")
    model = from_pretrained(directory)
    if not isinstance(model, kind):
        raise FolderError(f"{what}: {directory} holds a {type(model).__name__} model, "
                          f"expected {expected}")
    return model


def load_pipeline(model_dir: str | Path, *, what: str = "model_dir") -> Pipeline:
    """The text-to-image model of a run folder, its tokenizer.json and its image_tokenizer/
    (errors name `what`, e.g. the CLI flag)."""
    directory = Path(model_dir)
    model = load_folder_as(directory, TextToImage, what, "a text-to-image model "
                                                         "(attnlab train text2image)")
    tokenizer = load_tokenizer(directory)
    vq_dir = directory / IMAGE_TOKENIZER
    if not (vq_dir / "config.json").is_file():
        raise MissingFileError(f"{what}: {vq_dir} not found: a text-to-image folder keeps its "
                               "VQ-VAE there (attnlab train text2image writes it)")
    vq = load_folder_as(vq_dir, VQVAE, what, "a VQ-VAE")
    check_image_tokenizer(model, vq, f"{what} {directory}")
    return Pipeline(model.eval(), tokenizer, vq.eval())


def check_captions(captions: Sequence[str], name: str = "captions") -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, Sequence) or not captions:
        raise DataError(f"{name} must be a non-empty list of strings, got {captions!r}")
    for caption in captions:
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{name}: every caption must be non-empty text, got {caption!r}")
    return list(captions)


@torch.no_grad()
def sample_sequences(pipeline: Pipeline, captions: Sequence[str], samples: int, *,
                     top_k: int | None = 64, temperature: float = 1.0, seed: int = 0,
                     batch_size: int = 256) -> Tensor:
    """`samples` sequences [caption ids ; grid * grid sampled codes] per caption ->
    (len(captions) * samples, text_len + grid**2) ids, a caption's samples adjacent. Rows are
    sampled in batches of `batch_size`, batch i with the seed (seed, i): the same call gives
    the same sequences."""
    captions = check_captions(captions)
    for name, value in (("samples", samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 0):
        raise ConfigError(f"top_k must be a non-negative integer (0 or None: off), got {top_k!r}")
    model = pipeline.model.eval()
    c = model.config
    ids, _ = encode_captions(pipeline.tokenizer, captions, c.text_len)  # (N, text_len)
    cut = [caption for caption, tokens in zip(captions, pipeline.tokenizer.encode_batch(
        captions), strict=True) if len(tokens) + 2 > c.text_len]
    if cut:
        log.warning("%d caption(s) longer than the model's %d text tokens are cut, e.g. %r",
                    len(cut), c.text_len, cut[0])
    rows = ids.repeat_interleave(samples, dim=0).to(device_of(model))  # (N * S, text_len)
    return torch.cat([
        model.generate(rows[start:start + batch_size], max_new_tokens=c.grid * c.grid,
                       do_sample=True, top_k=top_k or 0, temperature=temperature,
                       seed=seed * 1_000_003 + i)  # (b, text_len + grid**2)
        for i, start in enumerate(range(0, rows.size(0), batch_size))])


@torch.no_grad()
def decode_images(pipeline: Pipeline, sequences: Tensor, batch_size: int = 256) -> Tensor:
    """Sampled sequences (N, text_len + grid**2) -> uint8 images (N, C, H, W)."""
    vq = pipeline.image_tokenizer.eval()
    images = []
    for start in range(0, sequences.size(0), batch_size):
        codes = pipeline.model.image_codes(sequences[start:start + batch_size])  # (b, g, g)
        images.append(to_pixels(vq.decode(codes.to(device_of(vq)))).cpu())  # (b, C, H, W)
    return torch.cat(images)


def imagine(pipeline: Pipeline, captions: Sequence[str], samples: int, *,
            top_k: int | None = 64, temperature: float = 1.0, seed: int = 0,
            batch_size: int = 256) -> Tensor:
    """`samples` images per caption -> uint8 (len(captions), samples, C, H, W), seeded as
    `sample_sequences`: the same call gives the same images."""
    sequences = sample_sequences(pipeline, captions, samples, top_k=top_k,
                                 temperature=temperature, seed=seed, batch_size=batch_size)
    images = decode_images(pipeline, sequences, batch_size)
    return images.view(len(captions), samples, *pipeline.image_shape)


def load_clip(clip_dir: str | Path, *, what: str = "clip_dir") -> ClipScorer:
    """A CLIP run folder: the model, its tokenizer.json and preprocessor_config.json."""
    directory = Path(clip_dir)
    model = load_folder_as(directory, CLIP, what, "a CLIP model (attnlab train clip)")
    return ClipScorer(model.eval(), load_tokenizer(directory), ImageProcessor.load(directory))


@torch.no_grad()
def clip_scores(clip: str | Path | ClipScorer, captions: Sequence[str], images: Tensor, *,
                batch_size: int = 256) -> Tensor:
    """Cosine of CLIP's caption and image embeddings, pair by pair: captions (N,), images uint8
    (N, C, H, W) -> (N,) float. `clip`: a CLIP folder or a loaded ClipScorer."""
    scorer = clip if isinstance(clip, ClipScorer) else load_clip(clip)
    captions = check_captions(captions)
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"images must be uint8 (N, C, H, W), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} "
                        f"{tuple(getattr(images, 'shape', ()))}")
    if len(captions) != images.size(0):
        raise DataError(f"captions and images must pair up: {len(captions)} captions, "
                        f"{images.size(0)} images")
    model, c = scorer.model.eval(), scorer.model.config
    device = device_of(model)
    distinct = list(dict.fromkeys(captions))  # each caption embedded once
    ids, mask = encode_captions(scorer.tokenizer, distinct, c.text_max_len)
    text = torch.cat([F.normalize(model.get_text_features(
        ids[s:s + batch_size].to(device), mask[s:s + batch_size].to(device)).float(), dim=-1)
        for s in range(0, len(distinct), batch_size)])  # (U, P)
    row = {caption: i for i, caption in enumerate(distinct)}
    text = text[torch.tensor([row[caption] for caption in captions], device=device)]  # (N, P)
    scores = []
    for s in range(0, images.size(0), batch_size):
        pixels = scorer.processor(fit_pixels(images[s:s + batch_size], c.num_channels,
                                             c.image_size)).to(device)
        embedded = F.normalize(model.get_image_features(pixels).float(), dim=-1)  # (b, P)
        scores.append((embedded * text[s:s + batch_size]).sum(-1).cpu())
    return torch.cat(scores)


def rerank(clip: str | Path | ClipScorer, captions: Sequence[str],
           samples: Tensor) -> tuple[Tensor, Tensor]:
    """samples uint8 (N, S, C, H, W) of N captions -> (order (N, S): sample indices best first
    by CLIP score, scores (N, S))."""
    if not isinstance(samples, Tensor) or samples.dim() != 5:
        raise DataError(f"samples must be (captions, samples, C, H, W), got "
                        f"{tuple(getattr(samples, 'shape', ()))}")
    N, S = samples.shape[:2]
    captions = check_captions(captions)
    if len(captions) != N:
        raise DataError(f"samples hold {N} captions' images, got {len(captions)} captions")
    flat = [caption for caption in captions for _ in range(S)]
    scores = clip_scores(clip, flat, samples.flatten(0, 1)).view(N, S)
    return scores.argsort(dim=1, descending=True, stable=True), scores


def save_grid(images: Tensor, path: str | Path, captions: Sequence[str],
              scores: Tensor | None = None) -> Path:
    """uint8 (N, S, C, H, W) -> a PNG of N rows (each titled with its caption) of S samples
    (each titled with its CLIP score when `scores` (N, S) is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.viz.figures import save_png

    N, S = images.shape[:2]
    fig, axes = plt.subplots(N, S, figsize=(1.3 * S, 1.55 * N), squeeze=False)
    for r in range(N):
        for s in range(S):
            ax = axes[r][s]
            picture = images[r, s].permute(1, 2, 0).numpy()  # (H, W, C)
            if picture.shape[-1] == 1:
                ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if scores is not None:
                ax.set_xlabel(f"{float(scores[r, s]):.3f}", fontsize=7)
        title = textwrap.shorten(captions[r], width=max(20, 14 * S))
        axes[r][0].set_title(title, fontsize=8, loc="left")
    return save_png(fig, path, dpi=100)


__all__ = ["IMAGE_TOKENIZER", "ClipScorer", "Pipeline", "check_image_tokenizer", "clip_scores",
           "decode_images", "imagine", "load_clip", "load_pipeline", "rerank",
           "sample_sequences", "save_grid"]
