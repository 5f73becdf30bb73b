"""serve.chat: messages rendered through LLaMA-2- and ChatML-shaped templates (written here in
the shape such folders ship them) and the plain default; bad messages as 400s; the sandbox."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, TemplateSyntaxError

from attnlab.errors import ConfigError
from attnlab.serve.chat import DEFAULT_TEMPLATE, check_chat_template, render_chat
from attnlab.serve.errors import ApiError

# LLaMA-2 chat's shape: an optional system prompt folded into the first [INST], <s> before each
# user turn, </s> after each answer, roles that must alternate.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system_message = none %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message is not none %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
# ChatML (Qwen, many fine-tunes): <|im_start|>role\ncontent<|im_end|>\n per message.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How are you?"}]


def render(messages: Any, template: str | None) -> str:
    return render_chat(messages, template, bos_token="<s>", eos_token="</s>")


def test_llama2_template() -> None:
    assert render(CONVERSATION, LLAMA2) == ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"
                                            " Hello! </s><s>[INST] How are you? [/INST]")
    assert render(CONVERSATION[1:2], LLAMA2) == "<s>[INST] Hi [/INST]"


def test_chatml_template_ends_with_the_generation_prompt() -> None:
    assert render(CONVERSATION[:2], CHATML) == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                                                "<|im_start|>user\nHi<|im_end|>\n"
                                                "<|im_start|>assistant\n")


def test_default_template() -> None:
    assert render(CONVERSATION, None) == ("System: Be brief.\nUser: Hi\nAssistant: Hello!\n"
                                          "User: How are you?\nAssistant:")
    assert render(CONVERSATION, None) == render(CONVERSATION, DEFAULT_TEMPLATE)


def test_blocks_are_trimmed_as_transformers_renders_them() -> None:
    template = ("{% for message in messages %}\n"
                "    {% if message['role'] == 'user' %}\n"
                "Q: {{ message['content'] }}\n"
                "    {% endif %}\n"
                "{% endfor %}\n")
    assert render(CONVERSATION, template) == "Q: Hi\nQ: How are you?\n"


def test_template_helpers() -> None:
    assert render([{"role": "user", "content": 'é "<x>"'}],
                  "{{ messages[0]['content'] | tojson }}") == '"é \\"<x>\\""'
    assert render(CONVERSATION, "{% for m in messages %}{% if loop.index > 2 %}{% break %}"
                                "{% endif %}{{ m['role'] }} {% endfor %}") == "system user "
    today = render(CONVERSATION, "{{ strftime_now('%Y-%m-%d') }}")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", today)


def test_content_as_text_parts_is_joined() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "first"},
                                             {"type": "text", "text": "second"}],
                 "name": "ignored"}]
    assert render(messages, CHATML).startswith("<|im_start|>user\nfirst\nsecond<|im_end|>\n")


@pytest.mark.parametrize(("messages", "match"), [
    ([], "non-empty list"),
    ("Hi", "non-empty list"),
    (None, "non-empty list"),
    (["Hi"], r"messages\[0\] must be an object"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}],
     r"messages\[1\]\.role must be one of \['system', 'user', 'assistant'\], got 'tool'"),
    ([{"content": "a"}], r"messages\[0\]\.role must be one of"),
    ([{"role": "user"}], r"messages\[0\]\.content must be a string .* got NoneType"),
    ([{"role": "user", "content": 5}], r"messages\[0\]\.content must be a string"),
    ([{"role": "user", "content": []}], r"messages\[0\]\.content must be a string"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     r"messages\[0\]\.content\[0\] must be .*only text parts"),
    ([{"role": "user", "content": [{"type": "text", "text": 3}]}], r"content\[0\] must be"),
])
def test_bad_messages_are_400_naming_messages(messages: Any, match: str) -> None:
    with pytest.raises(ApiError, match=match) as caught:
        render(messages, CHATML)
    assert (caught.value.status, caught.value.param) == (400, "messages")


def test_raise_exception_in_a_template_is_a_400() -> None:
    twice = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ApiError, match="roles must alternate") as caught:
        render(twice, LLAMA2)
    assert (caught.value.status, caught.value.param) == (400, "messages")


def test_a_field_the_messages_lack_is_a_400() -> None:
    with pytest.raises(ApiError, match="cannot render these messages") as caught:
        render(CONVERSATION[1:2], "{{ messages[0]['content'] }}{{ messages[5].content.x }}")
    assert caught.value.status == 400


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ raise_exception.__globals__['json'] }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{{ messages[0].update({'role': 'system'}) }}",
])
def test_the_sandbox_stops_a_template_reaching_python(template: str) -> None:
    # The template is the server's (its folder), not the client's: not a 400 but an error the
    # server's 500 handler logs; check_chat_template refuses it at start.
    with pytest.raises(SecurityError):
        render(CONVERSATION, template)
    with pytest.raises(ConfigError, match="not usable"):
        check_chat_template(template, bos_token="<s>", eos_token="</s>")


def test_a_template_that_does_not_compile() -> None:
    with pytest.raises(TemplateSyntaxError):
        render(CONVERSATION, "{% for m in messages %}")
    with pytest.raises(ConfigError, match="TemplateSyntaxError"):
        check_chat_template("{% for m in messages %}", bos_token="<s>", eos_token="</s>")


def test_check_chat_template_accepts_working_templates() -> None:
    for template in (LLAMA2, CHATML, DEFAULT_TEMPLATE):
        check_chat_template(template, bos_token="<s>", eos_token="</s>")
    # a template that refuses the sample conversation by its own rule is still usable
    check_chat_template("{{ raise_exception('no system role') }}", bos_token="", eos_token="")
