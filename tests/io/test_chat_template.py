"""io.load_chat_template: the chat template of a folder, in each form transformers writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnlab.errors import FolderError
from attnlab.io import load_chat_template

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def write_config(folder: Path, values: object) -> Path:
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def test_string_form(tmp_path: Path) -> None:
    write_config(tmp_path, {"model_max_length": 512, "chat_template": TEMPLATE})
    assert load_chat_template(tmp_path) == TEMPLATE


def test_named_list_form_takes_default(tmp_path: Path) -> None:
    write_config(tmp_path, {"chat_template": [{"name": "tool_use", "template": "{{ tools }}"},
                                              {"name": "default", "template": TEMPLATE}]})
    assert load_chat_template(tmp_path) == TEMPLATE


def test_absent_file_or_key_is_none(tmp_path: Path) -> None:
    assert load_chat_template(tmp_path) is None
    write_config(tmp_path, {"model_max_length": 512})
    assert load_chat_template(tmp_path) is None
    write_config(tmp_path, {"chat_template": None})
    assert load_chat_template(tmp_path) is None


def test_jinja_file_wins_over_tokenizer_config(tmp_path: Path) -> None:
    write_config(tmp_path, {"chat_template": "old {{ messages }}"})
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE, encoding="utf-8")
    assert load_chat_template(tmp_path) == TEMPLATE


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"chat_template": 3}), "must be a string or a list"),
    (json.dumps({"chat_template": ""}), "non-empty text"),
    (json.dumps({"chat_template": [{"name": "tool_use", "template": "x"}]}), 'no "default"'),
    (json.dumps({"chat_template": [{"template": "x"}]}), "each chat_template entry"),
    (json.dumps({"chat_template": ["x"]}), "each chat_template entry"),
    (json.dumps({"chat_template": [{"name": "default", "template": 7}]}), "non-empty text"),
])
def test_malformed_file_is_a_folder_error_naming_it(tmp_path: Path, content: str,
                                                    match: str) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FolderError, match=match) as caught:
        load_chat_template(tmp_path)
    assert str(path) in str(caught.value)


def test_jinja_file_not_utf8_is_a_folder_error(tmp_path: Path) -> None:
    (tmp_path / "chat_template.jinja").write_bytes(b"\xff\xfe{{ x }}")
    with pytest.raises(FolderError, match="not UTF-8"):
        load_chat_template(tmp_path)


def test_a_gguf_files_metadata_template(tmp_path: Path) -> None:
    import gguf

    def write(path: Path, template: str | None) -> Path:
        writer = gguf.GGUFWriter(str(path), "llama")
        if template is not None:
            writer.add_chat_template(template)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    assert load_chat_template(write(tmp_path / "chat.gguf", template)) == template
    assert load_chat_template(write(tmp_path / "plain.gguf", None)) is None
