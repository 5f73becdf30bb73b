"""nn/compile.py: a model compiled per block or per stack decodes the tokens the eager model
does (dynamic shapes: the attended length grows every step), names unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from attnlab.models import build_model
from attnlab.nn.compile import compile_blocks


def test_a_compiled_stack_generates_what_eager_does():
    torch.manual_seed(0)
    eager = build_model("llama-tiny", n_layers=1).eval()
    compiled = compile_blocks(copy.deepcopy(eager), dynamic=True, scope="stack")
    assert list(compiled.state_dict()) == list(eager.state_dict())
    prompt = torch.randint(0, eager.config.vocab_size, (2, 5))
    with torch.no_grad():
        expected = eager.generate(prompt, max_new_tokens=6, eos_token_id=-1)
        assert torch.equal(compiled.generate(prompt, max_new_tokens=6, eos_token_id=-1),
                           expected)


def test_an_unknown_scope_is_refused():
    with pytest.raises(ValueError, match=r"scope must be one of \('blocks', 'stack'\), got 'all'"):
        compile_blocks(build_model("gpt2-tiny"), scope="all")
