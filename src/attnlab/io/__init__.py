"""The one owner of model folders: config.json, weights, tokenizer.json, in attnlab or Hugging
Face layout, for every family.

    save_folder(model, "runs/x", tokenizer=tok)        # what model.save_pretrained does
    model = load_folder("runs/x", model_classes)       # what attnlab.from_pretrained does
    tokenizer = load_tokenizer("runs/x")
    settings = load_generation_config("runs/x")         # suggested decoding settings

This package knows no model class: the family layouts in `io/hf/` map names and config
fields, and the loader is handed the model_type -> class table (`attnlab.models` passes its
own), so the model files can save themselves without an import cycle.
"""

from attnlab.io.chat_template import load_chat_template
from attnlab.io.files import (
    CONFIG_NAME,
    TOKENIZER_NAME,
    read_config,
    read_weights,
    write_json,
)
from attnlab.io.folder import (
    HF_LAYOUTS,
    config_from_dict,
    config_to_dict,
    load_folder,
    load_tokenizer,
    save_folder,
)
from attnlab.io.generation_config import (
    GENERATION_CONFIG_NAME,
    hugging_face_beam_rules,
    load_generation_config,
    save_generation_config,
)

__all__ = ["CONFIG_NAME", "GENERATION_CONFIG_NAME", "HF_LAYOUTS", "TOKENIZER_NAME",
           "config_from_dict", "config_to_dict", "hugging_face_beam_rules", "load_chat_template",
           "load_folder", "load_generation_config", "load_tokenizer", "read_config", "read_weights",
           "save_folder", "save_generation_config", "write_json"]
