"""Weight-only quantized linear layers for inference: int8 per output channel (`int8.py`),
4-bit in groups (`int4.py`), and `with_weights`, the one switch the decoding commands use."""

from attnlab.nn.quant.common import (
    dequantize_linears,
    native_bf16,
    replace_linears,
    resolve_compute_dtype,
)
from attnlab.nn.quant.int4 import Int4Linear, quantize_groupwise, quantize_int4
from attnlab.nn.quant.int8 import Int8Linear, quantize_int8, quantize_per_channel
from attnlab.nn.quant.weights import WEIGHT_FORMATS, stored_format, with_weights

__all__ = ["WEIGHT_FORMATS", "Int4Linear", "Int8Linear", "dequantize_linears", "native_bf16",
           "quantize_groupwise", "quantize_int4", "quantize_int8", "quantize_per_channel",
           "replace_linears", "resolve_compute_dtype", "stored_format", "with_weights"]
