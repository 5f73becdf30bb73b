"""Cross-attention as word alignment: which source subwords each target subword attended to.

Bahdanau et al. 2015 (Fig. 3) showed the soft alignment of an attention translator as a
heatmap; in a Transformer each decoder layer and head has its own. `sharpest_layer` picks the
decoder layer whose head-averaged cross-attention is the most peaked (lowest mean entropy),
which is usually the one that reads like an alignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.tokenizers import Tokenizer
from attnlab.viz import plot_attention


@dataclass
class Alignment:
    weights: Tensor  # (layers, heads, T, S): cross-attention of every decoder layer and head
    source_tokens: list[str]  # S labels (source subwords and </s>)
    target_tokens: list[str]  # T labels (target subwords and </s>), the query positions

    def sharpest_layer(self) -> int:
        """Index of the decoder layer whose head-mean attention has the lowest entropy."""
        mean = self.weights.mean(1)  # (layers, T, S)
        entropy = -(mean * mean.clamp_min(1e-12).log()).sum(-1).mean(-1)  # (layers,)
        return int(entropy.argmin())


@torch.no_grad()
def cross_attention(model: nn.Module, tokenizer: Tokenizer, source: str,
                    target: str) -> Alignment:
    """Teacher-force `target` (e.g. the model's own translation) and return every decoder
    layer's cross-attention over `source`."""
    model.eval()
    device = next(model.parameters()).device
    src = torch.tensor([tokenizer.encode(source, add_eos=True)], device=device)  # (1, S)
    tgt = tokenizer.encode(target, add_eos=True)
    decoder_in = torch.tensor([[model.config.bos_token_id, *tgt[:-1]]], device=device)  # (1, T)
    out = model(src, decoder_in, output_attentions=True)
    weights = torch.stack([layer[0] for layer in out.cross_attentions]).float().cpu()
    eos = tokenizer.backend.id_to_token(tokenizer.eos_id)
    return Alignment(weights, [*tokenizer.tokens(source), eos], [*tokenizer.tokens(target), eos])


def plot_alignment(alignment: Alignment, path: str | Path, layer: int | None = None) -> Path:
    """Heatmap of one decoder layer's head-averaged cross-attention (the sharpest by default)."""
    n_layers = alignment.weights.size(0)
    if layer is None:
        layer = alignment.sharpest_layer()
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be in [0, {n_layers}), got {layer}")
    layer %= n_layers
    return plot_attention(
        alignment.weights[layer].mean(0), alignment.target_tokens, alignment.source_tokens, path,
        title=f"cross-attention, decoder layer {layer + 1} of {n_layers}, mean over heads",
        xlabel="source subwords", ylabel="translation subwords",
    )
