"""One `generate` for every model that generates, and the declared model kinds.

A model class declares what it is with the class attribute `model_kind`:

- "encoder-only": reads a sequence, generates nothing (BERT);
- "decoder-only": continues a prompt (GPT-2, LLaMA);
- "encoder-decoder": reads a source, writes a target (the 2017 Transformer, T5, the RNN and
  ConvS2S baselines).

Code that must know (the CLI, `generate` itself) reads `model_kind`; it never guesses from the
methods a model happens to have. Generating classes inherit `GenerationMixin`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from attnlab.errors import ConfigError
from attnlab.generation.beam import check_beam_arguments, search
from attnlab.generation.processors import check_settings, logits_processor
from attnlab.generation.state import DecoderOnlyState, EncoderDecoderState
from attnlab.generation.stepwise import decode_steps, seeded_generator

ENCODER_ONLY, DECODER_ONLY, ENCODER_DECODER = "encoder-only", "decoder-only", "encoder-decoder"
MODEL_KINDS = (ENCODER_ONLY, DECODER_ONLY, ENCODER_DECODER)
GENERATING_KINDS = (DECODER_ONLY, ENCODER_DECODER)


def model_kind(model: Any) -> str:
    """The declared kind of a model (instance or class); a TypeError when none is declared."""
    kind = getattr(model, "model_kind", None)
    if kind not in MODEL_KINDS:
        name = model.__name__ if isinstance(model, type) else type(model).__name__
        raise TypeError(f"{name} declares no model_kind (one of {MODEL_KINDS}), got {kind!r}")
    return kind


class GenerationMixin:
    """`generate` for decoder-only and encoder-decoder models.

    The class sets `model_kind` to "decoder-only" or "encoder-decoder" (checked when the class
    is defined; a base without one may leave it to its subclasses). Decoder-only models offer
    `forward(ids, attention_mask=, position_ids=, cache=)` and `new_cache(max_length)`;
    encoder-decoders `encode`, `decode`, `lm_head` and `new_cache()`; both a `config` with
    `eos_token_id` and `max_seq_len` (encoder-decoders also `pad_token_id` and
    `decoder_start_token_id`).
    """

    model_kind: ClassVar[str]
    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("model_kind")
        if kind is not None and kind not in GENERATING_KINDS:
            raise TypeError(f"{cls.__name__}.model_kind must be one of {GENERATING_KINDS} to "
                            f"generate, got {kind!r}")

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        num_beams: int = 1,
        length_penalty: float = 0.6,
        eos_token_id: int | None = None,
        seed: int | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Generate up to `max_new_tokens` tokens per row: greedy (the default), sampled
        (`do_sample`) or by beam search (`num_beams` > 1).

        input_ids (B, T): a decoder-only model's prompt, left-padded where rows differ in
        length; an encoder-decoder's source, right-padded. attention_mask (B, T): 1 on real
        tokens. Returns (B, L):
        - decoder-only: the prompt followed by the new tokens (Hugging Face's convention);
        - encoder-decoder: the new decoder tokens only, without the start token.
        Rows that end early (EOS emitted) are padded with `pad_token_id` (default: the config's
        pad_token_id, or the EOS id when the config has none); generation stops once every
        row has ended.

        Settings, the same for every model: `temperature`, `top_k` (0 = off) and `top_p`
        (1 = off) shape the sampling distribution (used only with `do_sample`);
        `repetition_penalty` (1 = off) applies to greedy, sampling and beam search alike;
        beam search ranks hypotheses by log P / ((5 + |Y|) / 6) ** length_penalty (GNMT),
        |Y| counting the new tokens; `eos_token_id` defaults to the config's; `seed` makes
        sampling reproducible with a local generator (the global RNG is untouched);
        `use_cache=False` recomputes every step without a KV cache (the slow oracle; for
        decoder-only models it still caches, growing instead of preallocated).
        """
        kind = model_kind(self)
        check_settings(max_new_tokens=max_new_tokens, do_sample=do_sample,
                       temperature=temperature, top_k=top_k, top_p=top_p,
                       repetition_penalty=repetition_penalty)
        check_beam_arguments(num_beams, length_penalty, max_new_tokens)
        if do_sample and num_beams > 1:
            raise ConfigError(f"do_sample=True needs num_beams=1 (beam sampling is not "
                              f"supported), got num_beams={num_beams}")
        config = self.config
        eos = config.eos_token_id if eos_token_id is None else eos_token_id
        pad = getattr(config, "pad_token_id", None) if pad_token_id is None else pad_token_id
        pad = eos if pad is None else pad
        processor = logits_processor(do_sample=do_sample, temperature=temperature, top_k=top_k,
                                     top_p=top_p, repetition_penalty=repetition_penalty)
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        input_ids = input_ids.to(device)  # ids made on the CPU follow the model
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
        training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]  # no dropout while generating
        try:
            new = self._generate_new(kind, input_ids, attention_mask, max_new_tokens,
                                     num_beams, length_penalty, eos, pad, processor, do_sample,
                                     seed, use_cache)
        finally:
            self.train(training)  # type: ignore[attr-defined]
        return new if kind == ENCODER_DECODER else torch.cat([input_ids, new], dim=1)

    def _generate_new(self, kind: str, input_ids: Tensor, attention_mask: Tensor | None,
                      max_new_tokens: int, num_beams: int, length_penalty: float, eos: int,
                      pad: int, processor: Any, do_sample: bool, seed: int | None,
                      use_cache: bool) -> Tensor:
        """The new tokens (B, n) of `generate`, its settings checked."""
        config = self.config
        if kind == ENCODER_DECODER:
            limit = min(max_new_tokens, config.max_seq_len - 1)  # the start token takes one
            state = EncoderDecoderState(self, input_ids, attention_mask, beams=num_beams,
                                        use_cache=use_cache, max_new_tokens=limit)
        else:
            state = DecoderOnlyState(self, input_ids, attention_mask,
                                     max_new_tokens=max_new_tokens, beams=num_beams,
                                     preallocate_cache=use_cache)
            limit = max_new_tokens
        if num_beams > 1:
            max_len = torch.full((input_ids.size(0),), limit, device=input_ids.device)
            new = search(state, max_len, beam_size=num_beams, length_penalty=length_penalty,
                         eos_id=eos, pad_id=pad, processor=processor).sequences  # (B, n)
        else:
            steps = list(decode_steps(state, max_new_tokens=limit, eos_id=eos, pad_id=pad,
                                      processor=processor, do_sample=do_sample,
                                      generator=seeded_generator(seed, input_ids.device)))
            new = torch.stack(steps, dim=1)  # (B, n)
        return new


__all__ = ["DECODER_ONLY", "ENCODER_DECODER", "ENCODER_ONLY", "GENERATING_KINDS", "MODEL_KINDS",
           "GenerationMixin", "model_kind"]
