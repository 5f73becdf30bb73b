"""What a Vision Transformer (Dosovitskiy et al. 2021) or an Audio Spectrogram Transformer
(Gong et al. 2021) looks at: attention over the patches of one image or spectrogram.

Attention rollout (Abnar & Zuidema 2020, `viz/rollout.py`) from [CLS] to every patch, and each
head's raw [CLS] attention, are drawn as heat maps over the picture: a patch's weight is spread
over the pixels of its window and, where windows overlap (AST's 16 x 16 patches at stride 10),
each pixel takes the mean of the windows covering it (Dosovitskiy et al., Fig. 6 and App. D.8,
draw the rollout the same way). Spectrograms are drawn frequency up, time to the right.

    pa = patch_attention_from_folder("runs/image", "--image", "boot.png")
    plot_rollout(pa, "viz/rollout.png"); plot_cls_heads(pa, pa.n_layers - 1, None, "h.png")
    write_viewer(pa.to_maps(), "viz/index.html")   # the viewer shows the patches
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.errors import ConfigError, MissingFileError  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402
from attnlab.viz.maps import AttentionMaps, AttentionView, PatchGrid  # noqa: E402
from attnlab.viz.rollout import attention_rollout  # noqa: E402

IMAGE_TYPES = ("vit", "deit")  # config model_type: ours, and Hugging Face's for DeiT folders
AUDIO_TYPES = ("audio-spectrogram-transformer",)
MODEL_TYPES = {"--image": IMAGE_TYPES, "--audio": AUDIO_TYPES}
NO_ATTENTION = {"resnet": "a CNN (ResNet) has no attention to show"}  # they see, not attend
ALPHA = 0.55  # opacity of the heat map over the picture
COLORMAP = "viridis"  # as the attention heatmaps and the viewer
NAN = float("nan")  # heat of pixels no patch covers: left transparent over the picture


@dataclass(frozen=True)
class PatchAttention:
    """Every layer's attention (L, H, T, T) of one model over one picture's patches."""

    model: str  # the folder it came from
    family: str  # model_type: "vit" or "audio-spectrogram-transformer"
    grid: PatchGrid
    picture: np.ndarray  # (rows, cols, 3) float in [0, 1], as drawn (a spectrogram flipped)
    weights: Tensor  # (L, H, T, T) float32, T = len(grid.prefix) + grid.n_patches
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        T = len(self.grid.prefix) + self.grid.n_patches
        if self.weights.dim() != 4 or self.weights.shape[2:] != (T, T):
            raise ValueError(f"weights must be (layers, heads, {T}, {T}) for {self.grid.grid} "
                             f"patches, got {tuple(self.weights.shape)}")
        if self.picture.shape != (*self.grid.size, 3):
            raise ValueError(f"picture must be {(*self.grid.size, 3)}, got {self.picture.shape}")

    @property
    def n_layers(self) -> int:
        return self.weights.size(0)

    @property
    def n_heads(self) -> int:
        return self.weights.size(1)

    def rollout(self) -> Tensor:
        """(n_patches,) rollout through every layer from [CLS] to each patch; with the prefix
        tokens' share it sums to 1, so the patches' sum is <= 1."""
        return cls_rollout(self.weights, len(self.grid.prefix))

    def heat(self, patch_weights: Tensor, uncovered: float = 0.0) -> Tensor:
        return patch_heat(patch_weights, self.grid, uncovered)

    def to_maps(self, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
                ) -> AttentionMaps:
        """The maps the viewer and maps.json read: the chosen layers and heads (0-based; all
        when None) of the self-attention and of its rollout, with the patch grid."""
        rows = list(range(self.n_layers)) if layers is None else list(layers)
        cols = list(range(self.n_heads)) if heads is None else list(heads)
        # a selection (or another order) is labelled with its 1-based numbers
        layer_numbers = () if rows == list(range(self.n_layers)) else tuple(i + 1 for i in rows)
        head_numbers = () if cols == list(range(self.n_heads)) else tuple(h + 1 for h in cols)
        raw = AttentionView("self-attention", "self", self.tokens, self.tokens,
                            self.weights[rows][:, cols], layer_numbers, head_numbers)
        rolled = attention_rollout(self.weights)[rows][:, None]  # (L', 1, T, T)
        rollout = AttentionView("self-attention rollout", "self", self.tokens, self.tokens,
                                rolled, layer_numbers)
        return AttentionMaps(self.model, self.family, (raw, rollout), patches=self.grid)


# ---- geometry: patches to pixels ----

def patch_heat(patch_weights: Tensor, grid: PatchGrid, uncovered: float = 0.0) -> Tensor:
    """(..., n_patches) weights, one per patch in the model's row-major order -> (..., rows,
    cols) per pixel of the picture as drawn: each patch's weight over its window, the mean of
    the windows where they overlap, `uncovered` where no window reaches (a border the stride
    leaves out)."""
    if patch_weights.size(-1) != grid.n_patches:
        raise ValueError(f"need {grid.n_patches} patch weights ({grid.grid[0]} x "
                         f"{grid.grid[1]}), got {patch_weights.size(-1)}")
    lead = patch_weights.shape[:-1]
    w = patch_weights.reshape(-1, 1, grid.n_patches).double()  # (N, 1, P)
    window = grid.patch[0] * grid.patch[1]
    fold = dict(output_size=grid.size, kernel_size=grid.patch, stride=grid.stride)
    total = F.fold(w.expand(-1, window, -1), **fold)  # (N, 1, rows, cols): sum of windows
    count = F.fold(torch.ones_like(w).expand(-1, window, -1), **fold)  # windows per pixel
    heat = (total / count.clamp_min(1))[:, 0]  # (N, rows, cols)
    heat = heat.masked_fill(count[:, 0] == 0, uncovered)
    if grid.flip_rows:
        heat = heat.flip(-2)
    return heat.reshape(*lead, *grid.size).float()


def cls_rollout(weights: Tensor, n_prefix: int) -> Tensor:
    """(L, H, T, T) -> (T - n_prefix,): the last layer's rollout row of [CLS] (token 0) over
    the patch tokens."""
    return attention_rollout(weights)[-1, 0, n_prefix:]


def cls_heads(weights: Tensor, layer: int, n_prefix: int) -> Tensor:
    """(L, H, T, T) -> (H, T - n_prefix): each head's [CLS] attention over the patches."""
    return weights[layer, :, 0, n_prefix:]


def patch_tokens(prefix: Sequence[str], grid: tuple[int, int], kind: str) -> tuple[str, ...]:
    """Token names: the prefix, then "r1c1", "r1c2", ... (image: row, column) or "f1t1", ...
    (audio: frequency, time), counted from 1."""
    a, b = ("r", "c") if kind == "image" else ("f", "t")
    return (*prefix, *(f"{a}{i + 1}{b}{j + 1}" for i in range(grid[0]) for j in range(grid[1])))


# ---- pictures ----

def image_picture(image: Tensor) -> np.ndarray:
    """uint8 (C, H, W) with 1 or 3 channels -> (H, W, 3) float in [0, 1]."""
    array = image.detach().cpu().float().div(255).permute(1, 2, 0).numpy()  # (H, W, C)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def spectrogram_picture(spectrogram: Tensor) -> np.ndarray:
    """(frames, mels) log-mel energies -> (mels, frames, 3) grey in [0, 1], frequency up."""
    x = spectrogram.detach().cpu().double().t().flip(0)  # (mels, frames), highest mel first
    low, high = float(x.min()), float(x.max())
    x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
    return np.repeat(x.float().numpy()[:, :, None], 3, axis=2)


def png_bytes(picture: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.clip(np.rint(picture * 255), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# ---- from a model folder ----

def check_model_type(model_type: Any, flag: str, directory: str | Path) -> None:
    """ConfigError naming `flag` when the folder's model cannot read that kind of file."""
    if model_type in MODEL_TYPES[flag]:
        return
    other = next((f for f, types in MODEL_TYPES.items() if model_type in types), None)
    hint = (f"pass the file with {other}" if other else
            NO_ATTENTION.get(model_type, "give it --text"))
    needs = "a ViT or DeiT" if flag == "--image" else "an Audio Spectrogram Transformer (AST)"
    raise ConfigError(f"{flag} needs {needs} model folder; --model {directory} holds a "
                      f"{model_type!r} model: {hint}")


def refuse_picture_model(directory: str | Path) -> None:
    """For --text: a ConfigError when the folder holds a ViT / DeiT / AST, saying which flag
    its files go with (a folder without config.json is left to the text path to name)."""
    from attnlab.io import read_config

    try:
        model_type = read_config(directory).get("model_type")
    except MissingFileError:
        return
    flag = next((f for f, types in MODEL_TYPES.items() if model_type in types), None)
    if flag is not None or model_type in NO_ATTENTION:
        hint = f"pass the file with {flag}" if flag else NO_ATTENTION[model_type]
        raise ConfigError(f"--text needs a text model; --model {directory} holds a "
                          f"{model_type!r} model: {hint}")


@torch.no_grad()
def extract_patch_attention(model: nn.Module, values: Tensor, shown: Tensor, *,
                            name: str = "model") -> PatchAttention:
    """One forward pass of a ViT / DeiT (values (1, C, H, W), shown uint8 (1, C, H, W)) or an
    AST (values (1, frames, mels), shown (1, frames, mels) log-mel) with its attentions."""
    model.eval()
    family = type(model.config).model_type
    c, n_prefix = model.config, model.num_prefix_tokens
    if family in AUDIO_TYPES:
        out = model(values, output_attentions=True)
        size = (c.num_mel_bins, c.max_length)  # rows: mel bins, cols: frames
        grid = (model.patch_grid(), (c.patch_size,) * 2, (c.frequency_stride, c.time_stride))
        picture, kind = spectrogram_picture(shown[0]), "audio"
    else:
        size = tuple(values.shape[-2:])
        out = model(values, output_attentions=True,
                    interpolate_pos_encoding=size != (c.image_size, c.image_size))
        p = (c.patch_size,) * 2
        grid, picture, kind = (model.patch_grid(*size), p, p), image_picture(shown[0]), "image"
    prefix = ("[CLS]", "[DIST]")[:n_prefix]
    patches = PatchGrid(kind, *grid, size=size, prefix=prefix, flip_rows=kind == "audio",
                        png=png_bytes(picture))
    if not out.attentions:
        raise ValueError(f"{name} returned no attention weights")
    weights = torch.stack([w[0] for w in out.attentions]).float().cpu()  # (L, H, T, T)
    return PatchAttention(name, family, patches, picture, weights,
                          patch_tokens(prefix, patches.grid, kind))


def patch_attention_from_folder(directory: str | Path, flag: str, path: str | Path
                                ) -> PatchAttention:
    """The model folder `directory` (ViT / DeiT for flag "--image", AST for "--audio") on the
    file `path`, prepared by the folder's preprocessor_config.json."""
    from attnlab.data.model_inputs import model_inputs
    from attnlab.io import read_config
    from attnlab.models.auto import from_pretrained

    if flag not in MODEL_TYPES:
        raise ValueError(f"flag must be one of {list(MODEL_TYPES)}, got {flag!r}")
    try:
        check_model_type(read_config(directory).get("model_type"), flag, directory)
    except MissingFileError as error:
        raise MissingFileError(f"--model: {error}") from None
    if not Path(path).is_file():
        raise MissingFileError(f"{flag}: {path} is not a file")
    model = from_pretrained(directory)
    check_model_type(type(model.config).model_type, flag, directory)
    try:
        inputs = model_inputs(directory, model.config, [path])
    except MissingFileError as error:
        raise MissingFileError(f"--model: {error}") from None
    return extract_patch_attention(model, inputs.values, inputs.shown, name=str(directory))


# ---- pictures of the attention ----

def _axes_of(pa: PatchAttention, ax: Any) -> dict[str, Any]:
    """imshow settings: an image fills its square; a spectrogram shows frames x mel bins."""
    rows, cols = pa.grid.size
    if pa.grid.kind == "image":
        ax.set_xticks([])
        ax.set_yticks([])
        return {"interpolation": "nearest"}
    ax.set_xlabel("time (frames of 10 ms)", fontsize=7)
    ax.set_ylabel("mel bin", fontsize=7)
    ax.tick_params(labelsize=6)
    return {"extent": (0, cols, 0, rows), "aspect": "auto", "interpolation": "nearest"}


def _overlay(pa: PatchAttention, ax: Any, heat: Tensor) -> Any:
    """The picture with `heat` (rows, cols) over it; returns the heat's image for a colorbar."""
    settings = _axes_of(pa, ax)
    ax.imshow(pa.picture, **settings)
    top = float(heat.nan_to_num(0.0).max())
    return ax.imshow(heat.numpy(), cmap=COLORMAP, alpha=ALPHA, vmin=0.0,
                     vmax=top if top > 0 else 1.0, **settings)


def _panel_size(pa: PatchAttention) -> tuple[float, float]:
    rows, cols = pa.grid.size
    if pa.grid.kind == "image":
        return 3.0, 3.0
    return 6.0, max(1.6, min(4.0, 6.0 * rows / cols))  # wide: time runs right


def plot_rollout(pa: PatchAttention, path: str | Path) -> Path:
    """rollout.png: the picture, and the rollout from [CLS] through every layer over it."""
    width, height = _panel_size(pa)
    image = pa.grid.kind == "image"
    fig, axes = plt.subplots(1 if image else 2, 2 if image else 1,
                             figsize=(2 * width + 1.2, height + 0.9) if image
                             else (width + 1.2, 2 * height + 1.2), squeeze=False)
    first, second = axes.flat
    first.imshow(pa.picture, **_axes_of(pa, first))
    first.set_title("image" if image else "log-mel spectrogram", fontsize=9)
    shown = _overlay(pa, second, pa.heat(pa.rollout(), NAN))
    second.set_title(f"rollout from [CLS] through {pa.n_layers} layers", fontsize=9)
    fig.colorbar(shown, ax=second, fraction=0.046, pad=0.04)
    fig.suptitle("attention rollout (Abnar & Zuidema 2020)", fontsize=10)
    return save_png(fig, path)


def plot_cls_heads(pa: PatchAttention, layer: int, heads: Sequence[int] | None,
                   path: str | Path) -> Path:
    """cls_heads_L<n>.png: one panel per head (0-based `heads`, all when None) of layer
    `layer` (0-based): that head's [CLS] attention over the patches, each on its own scale."""
    chosen = list(range(pa.n_heads)) if heads is None else list(heads)
    per_head = pa.heat(cls_heads(pa.weights, layer, len(pa.grid.prefix))[chosen], NAN)
    columns = min(len(chosen), 4 if pa.grid.kind == "image" else 2)
    rows = -(-len(chosen) // columns)
    width, height = _panel_size(pa)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(columns * (width + 0.8), rows * (height + 0.6) + 0.6))
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, head, heat in zip(axes.flat, chosen, per_head, strict=False):
        shown = _overlay(pa, ax, heat)
        ax.set_title(f"head {head + 1}", fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.suptitle(f"[CLS] attention over the patches, layer {layer + 1} of {pa.n_layers}",
                 fontsize=10)
    return save_png(fig, path)
