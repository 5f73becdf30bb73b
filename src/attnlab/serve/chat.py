"""Chat messages -> one prompt string, through the model folder's chat template (the Jinja2 text
in tokenizer_config.json's "chat_template", as transformers' `apply_chat_template` renders it)
or a plain default.

    text = render_chat([{"role": "user", "content": "Hi"}], template,
                       bos_token="<s>", eos_token="</s>")

Templates come with model folders, so they are run in Jinja2's `ImmutableSandboxedEnvironment`
(no attribute of Python's internals, no mutation of the messages) with the settings and helpers
transformers gives them: `trim_blocks`, `lstrip_blocks`, `{% break %}`/`{% continue %}`,
`raise_exception(message)`, a `tojson` that keeps non-ASCII text, `strftime_now(format)`, and
`add_generation_prompt=True` (the prompt ends where the assistant's reply begins).

Errors: a bad message list, or a template's own `raise_exception` (e.g. roles that do not
alternate), is the client's: ApiError 400 with param "messages". A template that does not
compile or that the sandbox stops is the server's: the Jinja2 error propagates (a 500 whose
traceback the server logs); `check_chat_template` finds both when the server starts.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import Template, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from attnlab.errors import ConfigError
from attnlab.serve.errors import ApiError
from attnlab.tokenizers import Tokenizer

ROLES = ("system", "user", "assistant")
# The plain default: "System: ...\nUser: ...\nAssistant: ...\n" then "Assistant:".
DEFAULT_TEMPLATE = ("{% for message in messages %}"
                    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
                    "{% endfor %}"
                    "{% if add_generation_prompt %}Assistant:{% endif %}")
# A conversation every template should render; `check_chat_template` tries it.
SAMPLE_CONVERSATION = [{"role": "system", "content": "You are helpful."},
                       {"role": "user", "content": "Hello."},
                       {"role": "assistant", "content": "Hi."},
                       {"role": "user", "content": "How are you?"}]


def render_chat(messages: Any, template: str | None, *, bos_token: str, eos_token: str) -> str:
    """The prompt text of `messages` (a list of {"role", "content"}) under `template` (None:
    `DEFAULT_TEMPLATE`), ending with the generation prompt."""
    checked = check_messages(messages)
    compiled = _compile(DEFAULT_TEMPLATE if template is None else template)
    try:
        return compiled.render(messages=checked, bos_token=bos_token, eos_token=eos_token,
                               add_generation_prompt=True)
    except SecurityError:
        raise  # the template reached for Python internals: the server's fault, logged as a 500
    except TemplateError as error:  # e.g. an undefined field these messages lack
        raise ApiError(400, f"the model's chat template cannot render these messages: {error}",
                       param="messages") from None


def template_tokens(tokenizer: Tokenizer) -> dict[str, str]:
    """The `bos_token` and `eos_token` a template writes (the tokenizer's, "" when it has
    none), as keyword arguments of `render_chat` and `check_chat_template`."""
    return {f"{role}_token": "" if i is None else tokenizer.id_to_token(i) or ""
            for role, i in (("bos", tokenizer.bos_id), ("eos", tokenizer.eos_id))}


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Chat messages as the template reads them ({"role", "content": str}), or ApiError 400.
    Content may be a string or a list of {"type": "text", "text": str} parts (joined by
    newlines); other keys of a message (e.g. "name") are not passed on."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects",
                       param="messages")
    checked = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"{where} must be an object with role and content, got "
                                f"{type(message).__name__}", param="messages")
        role = message.get("role")
        if role not in ROLES:
            raise ApiError(400, f"{where}.role must be one of {list(ROLES)}, got {role!r:.40}",
                           param="messages")
        checked.append({"role": role, "content": _content_text(message.get("content"), where)})
    return checked


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise ApiError(400, f'{where}.content[{j}] must be {{"type": "text", "text": '
                                    f'str}} (only text parts are supported)', param="messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise ApiError(400, f"{where}.content must be a string or a non-empty list of text parts, "
                        f"got {type(content).__name__}", param="messages")


def check_chat_template(template: str, *, bos_token: str, eos_token: str) -> None:
    """ConfigError unless `template` compiles and renders a plain conversation in the sandbox
    (for the server to refuse a broken folder at start instead of failing each chat request).
    A template that refuses the conversation itself (`raise_exception`, e.g. no system role)
    passes: that is a rule of the model, not a fault."""
    try:
        _compile(template).render(messages=SAMPLE_CONVERSATION, bos_token=bos_token,
                                  eos_token=eos_token, add_generation_prompt=True)
    except TemplateError as error:
        raise ConfigError(f"the folder's chat template is not usable: "
                          f"{type(error).__name__}: {error}") from None
    except ApiError:
        pass


@lru_cache(maxsize=8)
def _compile(template: str) -> Template:
    return _environment().from_string(template)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _raise_exception(message: str) -> NoReturn:
    """What a template calls to refuse a conversation (e.g. roles that do not alternate)."""
    raise ApiError(400, f"the model's chat template refused these messages: {message}",
                   param="messages")


def _tojson(value: Any, indent: int | None = None, separators: tuple[str, str] | None = None,
            sort_keys: bool = False) -> str:
    # Jinja2's own tojson escapes for HTML ("<" -> "\u003c"); a prompt wants the text itself.
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)
