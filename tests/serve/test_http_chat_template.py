"""A folder's own chat template, end to end: `attnlab serve` reads tokenizer_config.json's
"chat_template", renders the messages with it (the template writes the BOS token itself, so the
tokenizer's framing is not added twice), and the chat completion is the plain completion of
exactly that text."""

from __future__ import annotations

import json

import httpx
from server_process import llama_folder

from attnlab.io import load_tokenizer
from attnlab.serve.process import ServerProcess

# LLaMA-2's shape: <s>[INST] <<SYS>> system <</SYS>> user [/INST] answer </s><s>[INST] ...
TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ bos_token }}[INST] "
    "{% if loop.first and system %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
    "{{ message['content'] }} [/INST]"
    "{% else %} {{ message['content'] }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)


def test_the_folders_chat_template_frames_the_conversation(tmp_path):
    folder = llama_folder(tmp_path / "llama-chat")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    tokenizer = load_tokenizer(folder)
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "the apple"},
                {"role": "assistant", "content": "was red"},
                {"role": "user", "content": "the farmer"}]
    text = ("<s>[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nthe apple [/INST] was red </s>"
            "<s>[INST] the farmer [/INST]")
    ids = tokenizer.encode(text)  # the template's own <s>, nothing added by the tokenizer
    assert ids.count(1) == 2 and ids[0] == 1
    with ServerProcess(folder) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        chat = client.post("/v1/chat/completions", json={
            "messages": messages, "max_tokens": 8, "temperature": 0}).json()
        plain = client.post("/v1/completions", json={
            "prompt": ids, "max_tokens": 8, "temperature": 0}).json()
    assert chat["usage"]["prompt_tokens"] == len(ids)
    assert chat["choices"][0]["message"]["content"] == plain["choices"][0]["text"]
    assert chat["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] > 0
