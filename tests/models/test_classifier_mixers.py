"""SequenceClassifier with a recurrent sequence mixer (MIXER) in its layers: the mixer is called
causally, "first" pooling is refused, "last" reads each row's last real token, a padded row's
logits do not depend on its padding (right or left) and a mixer classifier learns in a few
steps. Runs over every registered mixer, and over a stand-in mixer while none is registered."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attnlab.models.sequence_classifier import SequenceClassifier, is_mixer
from attnlab.nn.mixers import MIXER, SequenceMixer, zero_padding

torch.set_num_threads(1)


class ToyDecay(SequenceMixer):
    """A stand-in mixer: h_t = a * h_{t-1} + W x_t over real tokens (padding skipped), y = U h."""

    def __init__(self, d_model: int, decay: float = 0.9) -> None:
        super().__init__(d_model)
        self.decay = decay
        self.w = torch.nn.Linear(d_model, d_model)
        self.u = torch.nn.Linear(d_model, d_model)
        self.calls: list[bool] = []  # the causal flag of every call

    def forward(self, x: Tensor, context=None, *, mask=None, causal=True, cache=None,
                need_weights=False, bias=None, position_ids=None):
        self.calls.append(causal)
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)  # (B, T)
        h = None if cache is None else cache.get("h")
        h = x.new_zeros(x.size(0), x.size(-1)) if h is None else h  # (B, D)
        inputs = zero_padding(self.w(x), keep)  # (B, T, D)
        outs = []
        for t in range(x.size(1)):
            step = self.decay * h + inputs[:, t]
            h = step if keep is None else torch.where(keep[:, t, None], step, h)
            outs.append(h)
        if cache is not None:
            cache.set("h", h)
            cache.advance(x.size(1))
        return self.result(self.u(torch.stack(outs, 1)), cache)  # (B, T, D)


@pytest.fixture
def names(monkeypatch) -> list[str]:
    """Every registered mixer, plus the stand-in."""
    monkeypatch.setitem(MIXER._entries, "toy_decay", ToyDecay)
    return MIXER.names()


def build(name: str, pooling: str = "last", **sizes) -> SequenceClassifier:
    torch.manual_seed(0)
    values = dict(vocab_size=12, n_classes=3, max_length=48, d_model=32, n_heads=2,
                  n_layers=2, d_ff=32)
    return SequenceClassifier(name, **{**values, **sizes}, pooling=pooling).eval()


def test_mixer_names_are_recognised(names):
    assert is_mixer("toy_decay") and not is_mixer("multi_head")
    for name in ("mamba", "rwkv", "retention", "lstm"):
        assert is_mixer(name) == (name in MIXER)
    with pytest.raises(ValueError, match="sequence mixer"):
        SequenceClassifier("no_such_mixer", vocab_size=5, n_classes=2, max_length=8)


def test_mixer_layers_are_called_causally_and_refuse_first_pooling(names):
    model = build("toy_decay")
    model(torch.randint(1, 12, (2, 10)))
    assert all(layer.self_attn.calls == [True] for layer in model.layers)
    with pytest.raises(ValueError, match="'last' or 'mean'.*toy_decay"):
        build("toy_decay", pooling="first")


def test_last_pooling_reads_the_last_real_token():
    model = build("multi_head")  # any variant: pooling is the classifier's
    ids = torch.randint(1, 12, (2, 10))
    keep = torch.ones(2, 10, dtype=torch.bool)
    keep[0, 6:] = False
    seen = {}
    model.final_norm.register_forward_hook(lambda m, i, out: seen.setdefault("x", out))
    logits = model(ids, keep).logits
    x = seen["x"]  # (B, T, D)
    want = model.head(torch.stack([x[0, 5], x[1, 9]]))
    torch.testing.assert_close(logits, want)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_does_not_change_a_rows_logits(names, pooling):
    ids = torch.randint(1, 12, (1, 20))
    for name in names:
        model = build(name, pooling=pooling).double()
        alone = model(ids).logits  # (1, C), no padding
        right = torch.cat([ids, torch.randint(1, 12, (1, 13))], 1)  # junk under the padding
        keep = torch.cat([torch.ones(1, 20), torch.zeros(1, 13)], 1).bool()
        left = torch.cat([torch.randint(1, 12, (1, 9)), ids], 1)
        keep_left = torch.cat([torch.zeros(1, 9), torch.ones(1, 20)], 1).bool()
        torch.testing.assert_close(model(right, keep).logits, alone, atol=1e-6, rtol=1e-6,
                                   msg=f"{name}: right padding changed the logits")
        torch.testing.assert_close(model(left, keep_left).logits, alone, atol=1e-6, rtol=1e-6,
                                   msg=f"{name}: left padding changed the logits")


def test_the_last_logits_do_not_read_past_the_last_real_token(names):
    """Causal: with "last" pooling, what follows a row's last real token cannot matter even
    unmasked (a mixer cannot peek ahead)."""
    for name in names:
        model = build(name).double()
        ids = torch.randint(1, 12, (1, 30))
        keep = torch.ones(1, 30, dtype=torch.bool)
        keep[0, 18:] = False
        changed = ids.clone()
        changed[0, 18:] = torch.randint(1, 12, (12,))
        torch.testing.assert_close(model(changed, keep).logits, model(ids, keep).logits)


def test_a_mixer_classifier_learns_in_a_few_steps(names):
    """Label = the first token's parity: a recurrent classifier pooling the last token must
    carry it through the row. Stops as soon as the loss has fallen by a fifth."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 12, (32, 8), generator=g)
    labels = ids[:, 0] % 2
    for name in names:
        model = build(name, n_classes=2, n_layers=1).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        while len(losses) < 30 and (not losses or losses[-1] > 0.8 * losses[0]):
            optimizer.zero_grad()
            loss = model(ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < 0.8 * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"
