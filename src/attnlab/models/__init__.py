"""Model presets: a name maps to (model class, config values, source). Presets are data.

    from attnlab.models import build_model, list_models
    model = build_model("transformer-base", vocab_size=37000)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from attnlab.models import conv, rnn
from attnlab.models.ast import AST
from attnlab.models.bert import Bert
from attnlab.models.clip import CLIP
from attnlab.models.conv import ConvS2S
from attnlab.models.gpt import GPT
from attnlab.models.llama import Llama
from attnlab.models.lstm_lm import LstmLM
from attnlab.models.mamba import Mamba
from attnlab.models.mixtral import Mixtral
from attnlab.models.resnet import ResNet
from attnlab.models.retnet import RetNet
from attnlab.models.rnn import RNNSeq2Seq
from attnlab.models.rwkv import Rwkv
from attnlab.models.t5 import T5
from attnlab.models.text2image import TextToImage
from attnlab.models.transformer import Transformer
from attnlab.models.vit import ViT
from attnlab.models.vqvae import VQVAE


@dataclass(frozen=True)
class Preset:
    model_class: type[nn.Module]
    values: dict[str, Any]
    source: str  # the paper or model card the numbers come from


PRESETS: dict[str, Preset] = {
    # Vaswani et al. 2017, Table 3 row "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1.
    "transformer-base": Preset(
        Transformer,
        dict(d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.1),
        "Vaswani et al. 2017, Table 3 (base): 65M params with a 37k shared vocabulary",
    ),
    # Table 3 row "big": N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3 (0.1 for EN-FR).
    "transformer-big": Preset(
        Transformer,
        dict(d_model=1024, n_heads=16, n_layers=6, d_ff=4096, dropout=0.3),
        "Vaswani et al. 2017, Table 3 (big): 213M params with a 37k shared vocabulary",
    ),
    # Sized for CPU training in minutes (the built-in translation demo); same architecture.
    "transformer-small": Preset(
        Transformer,
        dict(d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.1, max_seq_len=256),
        "attnlab CPU size: the base architecture at a quarter of its width and half its depth",
    ),
    # The `make demo` size, chosen by time-budgeted sweeps on 2 CPU cores (docs/translation.md,
    # "How the demo size was chosen"):
    # at a fixed 8-minute budget, fewer and cheaper layers (more optimizer steps) beat depth, a
    # 2-layer decoder beats 1, and pre-norm without dropout escapes the early plateau fastest.
    "transformer-mini": Preset(
        Transformer,
        dict(d_model=128, n_heads=4, n_layers=1, n_decoder_layers=2, d_ff=512, dropout=0.0,
             norm_first=True, max_seq_len=256),
        "attnlab CPU demo size: 1 encoder + 2 decoder layers, d=128, pre-norm, no dropout",
    ),
    "transformer-tiny": Preset(
        Transformer,
        dict(vocab_size=1000, d_model=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.1,
             max_seq_len=256),
        "attnlab test size (< 1M params)",
    ),
    # Radford et al. 2019, Table 2 and the released checkpoints (HF config "gpt2").
    "gpt2": Preset(GPT, dict(), "GPT-2 small: 12 layers, d=768, 12 heads, 124M params"),
    "gpt2-medium": Preset(
        GPT, dict(d_model=1024, n_heads=16, n_layers=24, d_ff=4096),
        "GPT-2 medium: 24 layers, d=1024, 16 heads, 355M params",
    ),
    "gpt2-tiny": Preset(
        GPT, dict(vocab_size=1000, max_seq_len=128, d_model=64, n_heads=4, n_layers=2, d_ff=256,
                  bos_token_id=999, eos_token_id=999),
        "attnlab test size (< 0.2M params)",
    ),
    # Touvron et al. 2023 (LLaMA-2 7B; HF "meta-llama/Llama-2-7b-hf" config).
    "llama-2-7b": Preset(Llama, dict(), "LLaMA-2 7B: 32 layers, d=4096, 32 heads, 6.7B params"),
    "llama-tiny": Preset(
        Llama, dict(vocab_size=1000, max_seq_len=256, d_model=64, n_heads=4, n_kv_heads=2,
                    n_layers=2, d_ff=172),
        "attnlab test size with grouped-query attention (4 query heads, 2 key/value heads)",
    ),
    # Peng et al. 2023 (RWKV-4) and the HF configs of "RWKV/rwkv-4-<size>-pile" (BlinkDL's Pile
    # checkpoints): GPT-NeoX's 50277-token vocabulary, d_ff = 4 d_model, trained at 1024 tokens,
    # rescale_every 6.
    "rwkv-169m": Preset(Rwkv, dict(d_model=768, n_layers=12),
                        "RWKV-4 Pile 169M: 12 layers, d=768, 169M params"),
    "rwkv-430m": Preset(Rwkv, dict(d_model=1024, n_layers=24),
                        "RWKV-4 Pile 430M: 24 layers, d=1024, 430M params"),
    "rwkv-1b5": Preset(Rwkv, dict(d_model=2048, n_layers=24),
                       "RWKV-4 Pile 1.5B: 24 layers, d=2048, 1.5B params"),
    "rwkv-3b": Preset(Rwkv, dict(d_model=2560, n_layers=32),
                      "RWKV-4 Pile 3B: 32 layers, d=2560, 3.0B params"),
    "rwkv-7b": Preset(Rwkv, dict(d_model=4096, n_layers=32),
                      "RWKV-4 Pile 7B: 32 layers, d=4096, 7.4B params"),
    "rwkv-14b": Preset(Rwkv, dict(d_model=5120, n_layers=40),
                       "RWKV-4 Pile 14B: 40 layers, d=5120, 14.1B params"),
    "rwkv-tiny": Preset(
        Rwkv, dict(vocab_size=1000, d_model=64, n_layers=2, d_ff=256),
        "attnlab test size (< 0.3M params): 2 layers, d=64",
    ),
    # Gu & Dao 2023 (sec. 4.2: GPT-3's widths at twice the layers, as each Mamba block replaces
    # an attention block and an MLP) and the HF configs of "state-spaces/mamba-<size>-hf":
    # GPT-NeoX's vocabulary padded to 50280, d_state 16, d_conv 4, expand 2, tied head.
    "mamba-130m": Preset(Mamba, dict(),
                         "state-spaces/mamba-130m: 24 layers, d=768, 129M params"),
    "mamba-370m": Preset(Mamba, dict(d_model=1024, n_layers=48),
                         "state-spaces/mamba-370m: 48 layers, d=1024, 372M params"),
    "mamba-790m": Preset(Mamba, dict(d_model=1536, n_layers=48),
                         "state-spaces/mamba-790m: 48 layers, d=1536, 793M params"),
    "mamba-1.4b": Preset(Mamba, dict(d_model=2048, n_layers=48),
                         "state-spaces/mamba-1.4b: 48 layers, d=2048, 1.37B params"),
    "mamba-2.8b": Preset(Mamba, dict(d_model=2560, n_layers=64),
                         "state-spaces/mamba-2.8b: 64 layers, d=2560, 2.77B params"),
    "mamba-tiny": Preset(
        Mamba, dict(vocab_size=1000, d_model=64, n_layers=4),
        "attnlab test size (< 0.2M params): 4 layers (two per llama-tiny layer), d=64",
    ),
    # Jiang et al. 2024 and the HF config of "mistralai/Mixtral-8x7B-v0.1": 32 layers, d=4096,
    # 32 query / 8 key-value heads, 8 SwiGLU experts of width 14336, top 2, 32k positions,
    # rope theta 1e6, router_aux_loss_coef 0.02. Never built in tests (46.7B parameters).
    "mixtral-8x7b": Preset(
        Mixtral, dict(max_seq_len=32768, moe=dict(experts=8, top_k=2, aux_loss_coef=0.02)),
        "Mixtral 8x7B: 32 layers, d=4096, 8 experts (top 2), 46.7B params (12.9B active)",
    ),
    "mixtral-tiny": Preset(
        Mixtral, dict(vocab_size=1000, max_seq_len=256, d_model=64, n_heads=4, n_kv_heads=2,
                      n_layers=2, d_ff=128, moe=dict(experts=8, top_k=2)),
        "attnlab test size (< 0.6M params): 8 experts of width 128, top 2, grouped-query",
    ),
    # Devlin et al. 2019, Table/section 3 (BERT-BASE): L=12, H=768, A=12, 110M params.
    "bert-base": Preset(Bert, dict(), "BERT-base (uncased vocabulary): 12 layers, d=768, 110M"),
    "bert-tiny": Preset(
        Bert, dict(vocab_size=1000, max_seq_len=128, d_model=64, n_heads=4, n_layers=2,
                   d_ff=256),
        "attnlab test size",
    ),
    # Raffel et al. 2020, sec. 3.1.1 and Table 14 (the released "t5-small" / "t5-base").
    "t5-small": Preset(T5, dict(), "T5 small: 6+6 layers, d=512, 8 heads, ReLU FFN, 60M params"),
    "t5-base": Preset(
        T5, dict(d_model=768, n_heads=12, n_layers=12, d_ff=3072),
        "T5 base: 12+12 layers, d=768, 12 heads, ReLU FFN, 220M params",
    ),
    # The v1.1 revision (google/t5-v1_1-base config): gated-GELU, untied head, d_ff 2048.
    "t5-v1_1-base": Preset(
        T5, dict(d_model=768, n_heads=12, n_layers=12, d_ff=2048, feed_forward="gated-gelu",
                 tie_word_embeddings=False, dropout=0.0),
        "T5 v1.1 base: gated-GELU feed-forward, untied output layer, 248M params",
    ),
    "t5-tiny": Preset(
        T5, dict(vocab_size=1000, d_model=64, n_heads=4, head_dim=16, n_layers=2, d_ff=128,
                 num_buckets=16, max_distance=64, max_seq_len=256),
        "attnlab test size",
    ),
    # Dosovitskiy et al. 2021, Table 1 (ViT-Base, ViT-Large) at 16 x 16 patches, 224 x 224
    # images; the ImageNet-1k heads of the released fine-tuned checkpoints.
    "vit-base-patch16-224": Preset(
        ViT, dict(num_labels=1000),
        "Dosovitskiy et al. 2021, Table 1 (ViT-B/16): 12 layers, d=768, MLP 3072, 12 heads, 86M",
    ),
    "vit-large-patch16-224": Preset(
        ViT, dict(d_model=1024, n_heads=16, n_layers=24, d_ff=4096, num_labels=1000),
        "Dosovitskiy et al. 2021, Table 1 (ViT-L/16): 24 layers, d=1024, MLP 4096, 16 heads, "
        "307M in the table, 304M with a 1000-class head",
    ),
    # Touvron et al. 2021, Table 1: the smaller widths DeiT introduced (ViT-S = DeiT-S,
    # ViT-Ti = DeiT-Ti), and DeiT-S with its distillation token (sec. 4).
    "vit-small-patch16-224": Preset(
        ViT, dict(d_model=384, n_heads=6, n_layers=12, d_ff=1536, num_labels=1000),
        "Touvron et al. 2021, Table 1 (DeiT-S = ViT-S/16): 12 layers, d=384, 6 heads, 22M",
    ),
    "vit-tiny-patch16-224": Preset(
        ViT, dict(d_model=192, n_heads=3, n_layers=12, d_ff=768, num_labels=1000),
        "Touvron et al. 2021, Table 1 (DeiT-Ti = ViT-Ti/16): 12 layers, d=192, 3 heads, 5M",
    ),
    "deit-small-distilled-patch16-224": Preset(
        ViT, dict(d_model=384, n_heads=6, n_layers=12, d_ff=1536, num_labels=1000,
                  distillation=True),
        "Touvron et al. 2021 (DeiT-S with the distillation token and head): 12 layers, d=384, "
        "6 heads, 22M",
    ),
    "vit-tiny": Preset(
        ViT, dict(image_size=32, patch_size=8, d_model=64, n_heads=4, n_layers=2, d_ff=128,
                  num_labels=10),
        "attnlab test size (< 0.1M params): 32 x 32 images, 8 x 8 patches",
    ),
    # The CPU training size of `attnlab train image --config fashion-mnist`, chosen by 100-second
    # sweeps on 2 CPU cores (docs/vision.md): at equal time, 4 x 4 = 16 patches of 7 x 7 and a
    # wider, deeper encoder beat 49 patches of 4 x 4 with a smaller one (85.8% vs 83.7%).
    "vit-fashion": Preset(
        ViT, dict(image_size=28, patch_size=7, num_channels=1, d_model=192, n_heads=6,
                  n_layers=6, d_ff=384, num_labels=10),
        "attnlab CPU size: 28 x 28 x 1 images, 7 x 7 patches, 6 layers, d=192 (1.8M params)",
    ),
    # The paper's hybrid (Dosovitskiy et al. 2021, sec. 3.1): the same encoder over patches of
    # a two-layer convolutional stem's feature map (32 channels) instead of pixels.
    "vit-hybrid-fashion": Preset(
        ViT, dict(image_size=28, patch_size=7, num_channels=1, d_model=192, n_heads=6,
                  n_layers=6, d_ff=384, num_labels=10, stem_channels=32),
        "attnlab CPU size: vit-fashion over a 2 x (3x3 conv, BatchNorm, GELU) stem of 32 "
        "channels",
    ),
    # He et al. 2016, sec. 4.2: the CIFAR-style ResNet (3x3 stem, stages of basic blocks, global
    # pooling); the convolutional baseline of `attnlab compare --family vision`.
    "resnet-tiny": Preset(
        ResNet, dict(image_size=32, num_channels=3, width=8, depths=(1, 1), num_labels=10),
        "attnlab test size (< 0.01M params): two stages of one basic block, width 8",
    ),
    # vit-fashion's parameter count (within 5%; tests/models/test_resnet.py checks it, and the
    # vision comparison recomputes the width with resnet.width_matching at run time).
    "resnet-fashion": Preset(
        ResNet, dict(image_size=28, num_channels=1, width=51, depths=(2, 2, 2), num_labels=10),
        "attnlab CPU size: ResNet-14 (3 stages of 2 basic blocks, width 51) at vit-fashion's "
        "parameter count, 28 x 28 x 1 images",
    ),
    # Gong et al. 2021, sec. 2.1-2.2 and 3.1: DeiT-B's size (12 layers, d=768, 12 heads) over
    # 128 mel bins x 1024 frames (10.24 s) in 12 x 101 overlapping 16 x 16 patches (stride 10);
    # AudioSet's 527 classes (transformers' MIT/ast-finetuned-audioset-10-10-0.4593).
    "ast-base": Preset(
        AST, dict(),
        "Gong et al. 2021 (AudioSet, fstride = tstride = 10): 12 layers, d=768, 12 heads, "
        "1,212 patches, 527 classes, 87M",
    ),
    "ast-tiny": Preset(
        AST, dict(num_mel_bins=32, max_length=64, d_model=64, n_heads=4, n_layers=2, d_ff=128,
                  num_labels=5),
        "attnlab test size (< 0.1M params): 32 mel bins x 64 frames in 2 x 5 patches",
    ),
    # Placeholder for the CPU training size of `attnlab train audio` on the spoken words (tuned
    # by the lead): 64 mel bins x 100 frames (1 s) in 5 x 9 patches of 16 x 16, stride 10.
    "ast-words": Preset(
        AST, dict(num_mel_bins=64, max_length=100, d_model=128, n_heads=4, n_layers=4, d_ff=256,
                  num_labels=20),
        "attnlab CPU size (placeholder): 64 mel bins x 100 frames, 4 layers, d=128",
    ),
    # Radford et al. 2021, Table 20 (ViT-B/32; HF openai/clip-vit-base-patch32's config): a
    # 12-layer d=512 text Transformer over 77 tokens, ViT-B/32 at 224 x 224, 512-d embeddings.
    "clip-vit-base-patch32": Preset(
        CLIP, dict(),
        "Radford et al. 2021, Table 20 (ViT-B/32): text 12 layers d=512, vision 12 layers "
        "d=768, 151M",
    ),
    # The caption tokenizer's specials (attnlab.tokenizers.captions): bos 0, eos 1, pad 2;
    # tasks set vocab_size (and text_max_len) from the tokenizer they train.
    "clip-tiny": Preset(
        CLIP, dict(vocab_size=1000, text_max_len=16, text_d_model=64, text_n_heads=4,
                   text_n_layers=2, text_d_ff=128, image_size=32, patch_size=8,
                   vision_d_model=64, vision_n_heads=4, vision_n_layers=2, vision_d_ff=128,
                   projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=2),
        "attnlab test size (< 0.3M params): 32 x 32 RGB images in 8 x 8 patches, 16 tokens",
    ),
    "clip-digits": Preset(
        CLIP, dict(vocab_size=1000, text_max_len=24, text_d_model=128, text_n_heads=4,
                   text_n_layers=3, text_d_ff=512, image_size=32, patch_size=4, num_channels=1,
                   vision_d_model=128, vision_n_heads=4, vision_n_layers=4, vision_d_ff=512,
                   projection_dim=128, bos_token_id=0, eos_token_id=1, pad_token_id=2),
        "attnlab CPU size: 32 x 32 grey digit scenes in 64 patches of 4 x 4, 24 caption "
        "tokens; text 3 layers, vision 4 layers, d=128 (1.6M params)",
    ),
    "clip-emoji": Preset(
        CLIP, dict(vocab_size=1000, text_max_len=24, text_d_model=128, text_n_heads=4,
                   text_n_layers=3, text_d_ff=512, image_size=32, patch_size=4, num_channels=3,
                   vision_d_model=128, vision_n_heads=4, vision_n_layers=4, vision_d_ff=512,
                   projection_dim=128, bos_token_id=0, eos_token_id=1, pad_token_id=2),
        "attnlab CPU size: 32 x 32 RGB emoji in 64 patches of 4 x 4, 24 caption tokens; text "
        "3 layers, vision 4 layers, d=128 (1.6M params)",
    ),
    # van den Oord et al. 2017 (sec. 4.2's encoder / decoder at small scale) with the EMA codebook
    # of Razavi et al. 2019: the image tokenizer of text-to-image (`attnlab train vqvae`).
    "vqvae-tiny": Preset(
        VQVAE, dict(image_size=16, num_channels=3, hidden_channels=16, downsample=4,
                    res_blocks=1, codebook_size=32, code_dim=8),
        "attnlab test size (< 0.02M params): 16 x 16 RGB images to 4 x 4 codes of 32",
    ),
    "vqvae-scenes": Preset(
        VQVAE, dict(image_size=32, num_channels=1, hidden_channels=64, downsample=4,
                    res_blocks=2, codebook_size=128, code_dim=32),
        "attnlab CPU size: 32 x 32 grey digit scenes to 8 x 8 codes of 128",
    ),
    "vqvae-emoji": Preset(
        VQVAE, dict(image_size=32, num_channels=3, hidden_channels=96, downsample=4,
                    res_blocks=2, codebook_size=256, code_dim=64),
        "attnlab CPU size: 32 x 32 RGB emoji to 8 x 8 codes of 256",
    ),
    # Ramesh et al. 2021 (DALL-E's decoder over [text ; image codes]) at CPU scale; the task sets
    # text_vocab_size / text_len from its caption tokenizer and image_vocab_size / grid from the
    # VQ-VAE. "dalle" = the paper's row / column masks by layer, convolutional in the last one.
    "text2image-tiny": Preset(
        TextToImage, dict(text_vocab_size=64, text_len=4, image_vocab_size=32, grid=5,
                          d_model=64, n_heads=4, n_layers=3, d_ff=128,
                          attention_layout="dalle"),
        "attnlab test size (< 0.2M params): 4 text tokens, 5 x 5 codes of 32, row / column / "
        "conv masks",
    ),
    "text2image-scenes": Preset(
        TextToImage, dict(text_vocab_size=1000, text_len=16, image_vocab_size=128, grid=8,
                          d_model=192, n_heads=6, n_layers=4, d_ff=768, dropout=0.0),
        "attnlab CPU size: captions of digit scenes to 8 x 8 codes, 4 layers, d=192 (1.9M "
        "params with a 300-token caption vocabulary)",
    ),
    "text2image-emoji": Preset(
        TextToImage, dict(text_vocab_size=1000, text_len=16, image_vocab_size=256, grid=8,
                          d_model=192, n_heads=6, n_layers=4, d_ff=768, dropout=0.1),
        "attnlab CPU size: emoji names to 8 x 8 codes of 256, 4 layers, d=192",
    ),
    # Sun et al. 2023, Table 2 (the sizes of GPT-3's 1.3B / 2.7B / 6.7B models): RetNet with
    # value heads 2x the query/key width and a GELU FFN of 2d; tied head, GPT-2's vocabulary.
    "retnet-1.3b": Preset(
        RetNet, dict(), "RetNet 1.3B: 24 layers, d=2048, 8 retention heads, FFN 4096, 1.3B",
    ),
    "retnet-2.7b": Preset(
        RetNet, dict(d_model=2560, n_layers=32, n_heads=10, d_ff=5120),
        "RetNet 2.7B: 32 layers, d=2560, 10 retention heads, FFN 5120, 2.6B",
    ),
    "retnet-6.7b": Preset(
        RetNet, dict(d_model=4096, n_layers=32, n_heads=16, d_ff=8192),
        "RetNet 6.7B: 32 layers, d=4096, 16 retention heads, FFN 8192, 6.6B",
    ),
    "retnet-tiny": Preset(
        RetNet, dict(vocab_size=1000, d_model=64, n_layers=2, n_heads=4, d_ff=128,
                     bos_token_id=999, eos_token_id=999),
        "attnlab test size (< 0.2M params): 4 retention heads of 16 (values 32), FFN 128",
    ),
    # Zaremba et al. 2014, sec. 4.1 (the small non-regularized model: 2 layers of 200 LSTM
    # units over Penn Treebank's 10k words), in attnlab's pre-norm residual blocks, tied head.
    "lstm-lm-small": Preset(
        LstmLM, dict(vocab_size=10000, d_model=200, n_layers=2),
        "Zaremba et al. 2014 (small): 2 LSTM layers of 200 units, 10k words, tied, 2.6M params",
    ),
    "lstm-lm-tiny": Preset(
        LstmLM, dict(vocab_size=1000, d_model=64, n_layers=2, bos_token_id=999,
                     eos_token_id=999),
        "attnlab test size (< 0.2M params): 2 LSTM layers of 64 units, no feed-forward",
    ),
}

# Baselines of issue 6 keep their presets beside their code: name -> (values, source).
for _model_class, _presets in ((RNNSeq2Seq, rnn.PRESETS), (ConvS2S, conv.PRESETS)):
    PRESETS.update({name: Preset(_model_class, values, source)
                    for name, (values, source) in _presets.items()})


def list_models(model_type: str | None = None) -> list[str]:
    """Names of every preset, or of those of one family ("transformer", "gpt2", ...)."""
    return sorted(name for name, preset in PRESETS.items()
                  if model_type in (None, preset.model_class.config_class.model_type))


def _nested(current: Any, value: Any) -> Any:
    """A dict override of a nested settings field (`moe`) goes over the field's current value
    (a preset's dict or a settings object); anything else replaces it."""
    if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
        current = dataclasses.asdict(current)
    if isinstance(value, Mapping) and isinstance(current, Mapping):
        return {**current, **value}
    return value


def get_config(name: str, **overrides: Any) -> Any:
    """The preset's config with `overrides` applied (unknown fields raise ValueError); a dict
    given for a nested field such as `moe` is merged into the preset's value:
    get_config("gpt2-tiny", moe={"experts": 8, "top_k": 1}) is a Switch GPT-2."""
    if name not in PRESETS:
        raise KeyError(f"unknown model {name!r}; expected one of: {', '.join(list_models())}")
    preset = PRESETS[name]
    config_class = preset.model_class.config_class
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config field(s) {unknown} for {name!r}; valid fields: {sorted(fields)}"
        )
    values = dict(preset.values)
    for key, value in overrides.items():
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else (None if f.default is dataclasses.MISSING else f.default)
        values[key] = _nested(values.get(key, default), value)
    return config_class(**values)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a preset with random weights: build_model("transformer-base", vocab_size=37000)."""
    config = get_config(name, **overrides)
    return PRESETS[name].model_class(config)


__all__ = ["AST", "CLIP", "GPT", "PRESETS", "Bert", "ConvS2S", "Llama", "LstmLM", "Mamba",
           "Mixtral", "Preset", "RNNSeq2Seq", "RetNet", "Rwkv", "T5", "TextToImage", "Transformer",
           "VQVAE", "ViT", "build_model", "get_config", "list_models"]
