"""Context-aware embeddings: how the representation of one word moves with its context, layer by
layer (Peters et al., 2018, "Deep contextualized word representations"; Ethayarajh, 2019, "How
Contextual are Contextualized Word Representations?").

A static embedding gives "apple" one vector; after self-attention it is a mix of the words
around it, so "apple was juicy" and "apple stock crashed" should pull it apart. For every
context we take the word's vector at the embedding output and after each layer (the mean of its
sub-tokens), and report the cosine similarity between contexts per layer. A control word whose
meaning does not change (say "the") shows how much of the drift is just "any context moves
every word" (Ethayarajh's anisotropy caveat).

    model, tokenizer = load_model_and_tokenizer("runs/mlm")
    result = compare_contexts(model, tokenizer, "apple",
                              ["apple was juicy", "apple stock crashed"], control="was")
    print(result.table()); plot_comparison(result, "runs/embed/similarity.png")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from attnlab.errors import ConfigError, DataError  # noqa: E402
from attnlab.nn.stack import Decoder, Encoder  # noqa: E402
from attnlab.tokenizers import Tokenizer  # noqa: E402
from attnlab.viz.extract import ENCODER_DECODER, encode_text, family_of, readable  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402


@dataclass(frozen=True)
class ContextTokens:
    """One context as the model reads it, and where the word sits in it."""

    text: str
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character span of each token in `text` ((0, 0): special)


def frame_context(model: nn.Module, tokenizer: Tokenizer, text: str) -> ContextTokens:
    """`text` framed as the family reads it (`encode_text`: [CLS] .. [SEP], </s>, ...), with
    each token's character span so words can be found whatever the tokenizer's symbols."""
    framed = encode_text(model, tokenizer, text).ids
    raw = tokenizer.encoding(text)
    start = next((p for p in range(len(framed) - len(raw.ids) + 1)
                  if framed[p:p + len(raw.ids)] == raw.ids), None)
    if start is None:  # cannot happen with encode_text's framing; kept as a guard
        raise ValueError(f"cannot align the tokens of {text!r} with the model's framing")
    offsets = [(0, 0)] * len(framed)
    offsets[start:start + len(raw.ids)] = [tuple(o) for o in raw.offsets]
    specials = [start + i for i, special in enumerate(raw.special_tokens_mask) if special]
    for i in specials:
        offsets[i] = (0, 0)
    tokens = [readable(tokenizer, tokenizer.id_to_token(i) or f"<{i}>") for i in framed]
    return ContextTokens(text, framed, tokens, offsets)


def find_word(word: str, context: ContextTokens) -> list[int]:
    """Token indices of the first whole-word, case-insensitive occurrence of `word`: every
    token whose character span overlaps it. ValueError naming the word and the tokens when the
    text does not contain it."""
    if not word.strip():
        raise ConfigError("--word is empty; give the word to follow")
    match = re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", context.text, re.IGNORECASE)
    indices = [] if match is None else [
        i for i, (s, e) in enumerate(context.offsets)
        if e > s and s < match.end() and e > match.start()
    ]
    if not indices:
        raise DataError(f"word {word!r} not found in context {context.text!r} "
                         f"(its tokens: {context.tokens})")
    return indices


def transformer_stack(model: nn.Module) -> Encoder | Decoder:
    """The stack whose layers make the hidden states: the encoder of BERT and of encoder-decoder
    models (translation Transformer, T5), the decoder of GPT-2 / LLaMA."""
    family = family_of(model)
    stack = getattr(model, "encoder", None)
    if family in ("gpt2", "llama"):
        stack = getattr(model, "decoder", None)
    if not isinstance(stack, Encoder | Decoder):
        raise ConfigError(f"embed-compare needs Transformer layers; the {family} model has "
                         f"{type(stack).__name__} (RNN and convolutional baselines are not "
                         "supported)")
    return stack


@torch.no_grad()
def hidden_states(model: nn.Module, input_ids: Tensor) -> Tensor:
    """(L + 1, B, T, D): the stack's input (embedding output) and each layer's output, read by
    forward hooks (no model code changed). As in Hugging Face's `hidden_states`, the last entry
    is after the stack's final norm when it has one (pre-norm GPT-2 / LLaMA / T5)."""
    stack = transformer_stack(model)
    states: list[Tensor] = []

    def take_input(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        states.append(args[0] if args else kwargs["x"])  # (B, T, D)

    def take_layer(module: nn.Module, args: tuple, output: tuple) -> None:
        states.append(output[0])  # (B, T, D)

    def take_output(module: nn.Module, args: tuple, output: Any) -> None:
        final.append(output.last_hidden_state)  # (B, T, D), after the final norm if any

    final: list[Tensor] = []
    handles = [stack.register_forward_pre_hook(take_input, with_kwargs=True),
               stack.register_forward_hook(take_output)]
    handles += [layer.register_forward_hook(take_layer) for layer in stack.layers]
    model.eval()
    try:
        if family_of(model) in ENCODER_DECODER:
            model.encode(input_ids)
        else:
            model(input_ids)
    finally:
        for handle in handles:
            handle.remove()
    states[-1] = final[0]
    return torch.stack(states).float().cpu()  # (L + 1, B, T, D)


def word_vectors(model: nn.Module, context: ContextTokens, indices: list[int]) -> Tensor:
    """(L + 1, D): the mean over the word's sub-tokens at every layer."""
    device = next(model.parameters()).device
    states = hidden_states(model, torch.tensor([context.ids], device=device))  # (L+1, 1, T, D)
    return states[:, 0, indices].mean(1)  # (L + 1, D)


@dataclass(frozen=True)
class EmbeddingComparison:
    """Cosine similarity per layer between the contexts' vectors of `word` (and `control`)."""

    word: str
    contexts: tuple[str, ...]
    word_tokens: tuple[tuple[str, ...], ...]  # the word's sub-tokens in each context
    layers: tuple[str, ...]  # "embeddings", "layer 1", ...
    pairs: tuple[tuple[int, int], ...]  # context index pairs, i < j
    similarity: Tensor  # (P, L + 1)
    control: str | None = None
    control_similarity: Tensor | None = None  # (P, L + 1)
    vectors: Tensor | None = field(default=None, repr=False)  # (N, L + 1, D) of the word

    def table(self) -> str:
        """A plain-text table: one row per layer, one column per context pair (and control)."""
        names = [f"{self.word} {i + 1}~{j + 1}" for i, j in self.pairs]
        columns = [self.similarity]
        if self.control is not None and self.control_similarity is not None:
            names += [f"{self.control} {i + 1}~{j + 1}" for i, j in self.pairs]
            columns.append(self.control_similarity)
        values = torch.cat(columns)  # (columns, L + 1)
        width = max(12, *(len(n) + 2 for n in names))
        lines = [f"{'layer':<12}" + "".join(f"{n:>{width}}" for n in names)]
        for layer, row in zip(self.layers, values.t().tolist(), strict=True):
            lines.append(f"{layer:<12}" + "".join(f"{v:>{width}.4f}" for v in row))
        contexts = [f"  {i + 1}: {text}  ({' '.join(tokens)})"
                    for i, (text, tokens) in enumerate(zip(self.contexts, self.word_tokens,
                                                           strict=True))]
        return "\n".join(["contexts (word sub-tokens):", *contexts,
                          "cosine similarity per layer:", *lines])

    def to_json(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "contexts": list(self.contexts),
            "word_tokens": [list(t) for t in self.word_tokens],
            "layers": list(self.layers),
            "pairs": [list(p) for p in self.pairs],
            "similarity": torch.round(self.similarity, decimals=4).tolist(),
            "control": self.control,
            "control_similarity": None if self.control_similarity is None
            else torch.round(self.control_similarity, decimals=4).tolist(),
        }


def _pairwise(vectors: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """(N, L + 1, D) -> (P, L + 1) cosine similarity of each pair at each layer."""
    return torch.stack([F.cosine_similarity(vectors[i].double(), vectors[j].double(), dim=-1)
                        for i, j in pairs]).float()


def compare_contexts(model: nn.Module, tokenizer: Tokenizer, word: str, contexts: list[str],
                     control: str | None = None) -> EmbeddingComparison:
    """The word's (and the control word's) cosine similarity between every pair of contexts,
    at the embedding output and after every layer."""
    if len(contexts) < 2:
        raise ConfigError(f"--context must be given at least twice, got {len(contexts)}")
    framed = [frame_context(model, tokenizer, text) for text in contexts]
    located = [find_word(word, c) for c in framed]
    vectors = torch.stack([word_vectors(model, c, idx)
                           for c, idx in zip(framed, located, strict=True)])  # (N, L+1, D)
    pairs = list(combinations(range(len(contexts)), 2))
    control_similarity = None
    if control is not None:
        control_vectors = torch.stack([word_vectors(model, c, find_word(control, c))
                                       for c in framed])  # (N, L + 1, D)
        control_similarity = _pairwise(control_vectors, pairs)
    n_layers = vectors.size(1) - 1
    return EmbeddingComparison(
        word=word,
        contexts=tuple(contexts),
        word_tokens=tuple(tuple(c.tokens[i] for i in idx) for c, idx in zip(framed, located,
                                                                            strict=True)),
        layers=("embeddings", *(f"layer {i}" for i in range(1, n_layers + 1))),
        pairs=tuple(pairs),
        similarity=_pairwise(vectors, pairs),
        control=control,
        control_similarity=control_similarity,
        vectors=vectors,
    )


def plot_comparison(result: EmbeddingComparison, path: str | Path, title: str | None = None
                    ) -> Path:
    """Similarity vs layer: a solid line per context pair for the word, dashed for the control."""
    x = range(len(result.layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(result.layers) + 3), 4.5))
    for p, (i, j) in enumerate(result.pairs):
        ax.plot(x, result.similarity[p].numpy(), "o-", color=f"C{p % 10}",
                label=f"{result.word!r}: context {i + 1} vs {j + 1}")
        if result.control_similarity is not None:
            ax.plot(x, result.control_similarity[p].numpy(), "s--", color=f"C{p % 10}",
                    alpha=0.6, label=f"control {result.control!r}: {i + 1} vs {j + 1}")
    ax.set_xticks(list(x), list(result.layers), rotation=30)
    ax.set_ylabel("cosine similarity")
    lowest = float(result.similarity.min())
    if result.control_similarity is not None:
        lowest = min(lowest, float(result.control_similarity.min()))
    ax.set_ylim(min(0.0, lowest - 0.05), 1.02)
    ax.set_title(title or f"{result.word!r} across contexts, layer by layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    legend_text = "\n".join(f"{i + 1}: {text[:70]}" for i, text in enumerate(result.contexts))
    fig.text(0.01, 0.01, legend_text, fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * len(result.contexts), 1, 1))
    return save_png(fig, path, dpi=120, tight=False)
