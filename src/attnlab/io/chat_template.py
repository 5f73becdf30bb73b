"""A model folder's chat template: the Jinja2 text that turns a list of chat messages into the
prompt the model was tuned on, where Hugging Face folders keep it.

    template = load_chat_template("models/llama-chat")   # str, or None when the folder has none

transformers keeps it as "chat_template" in tokenizer_config.json, either one string or a list
of named templates ([{"name": "default", "template": ...}, {"name": "tool_use", ...}]); recent
versions write it to its own file, chat_template.jinja, which then wins. A llama.cpp `.gguf` file
keeps it in its metadata, "tokenizer.chat_template". Only the text is read
here; rendering it (in a sandbox) is the server's job (`attnlab.serve.chat`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlab.errors import FolderError
from attnlab.io.files import read_json
from attnlab.io.gguf import field, is_gguf, open_gguf

TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def load_chat_template(folder: str | Path) -> str | None:
    """The folder's chat template: chat_template.jinja, else tokenizer_config.json's
    "chat_template" (the "default" one of a named list), or a .gguf file's
    "tokenizer.chat_template"; None when there is none."""
    folder = Path(folder)
    if is_gguf(folder):
        template = field(open_gguf(folder), "tokenizer.chat_template", default=None)
        return None if template is None else _checked_text(template, folder)
    jinja = folder / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        try:
            return _checked_text(jinja.read_text(encoding="utf-8"), jinja)
        except UnicodeDecodeError as error:
            raise FolderError(f"{jinja}: not UTF-8 text ({error})") from None
    path = folder / TOKENIZER_CONFIG_NAME
    if not path.is_file():
        return None
    value = read_json(path, "JSON object of tokenizer settings").get("chat_template")
    if value is None:
        return None
    if isinstance(value, str):
        return _checked_text(value, path)
    if isinstance(value, list):
        return _checked_text(_default_of(value, path), path)
    raise FolderError(f"{path}: chat_template must be a string or a list of "
                      f'{{"name", "template"}} objects, got {type(value).__name__}')


def _default_of(templates: list[Any], path: Path) -> str:
    """The "default" template of transformers' named-list form."""
    by_name: dict[str, Any] = {}
    for entry in templates:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and "template" in entry):
            raise FolderError(f'{path}: each chat_template entry must be {{"name": str, '
                              f'"template": str}}, got {entry!r:.80}')
        by_name[entry["name"]] = entry["template"]
    if "default" not in by_name:
        raise FolderError(f'{path}: chat_template lists {sorted(by_name)} but no "default"; '
                          f'name the one to use "default"')
    return by_name["default"]


def _checked_text(template: Any, path: Path) -> str:
    if not isinstance(template, str) or not template.strip():
        raise FolderError(f"{path}: the chat template must be non-empty text, "
                          f"got {template!r:.80}")
    return template
