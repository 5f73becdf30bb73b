"""`attnlab train classify --init DIR`: fine-tuning starts from exactly the pre-trained encoder
(an `attnlab train mlm` folder or a transformers BERT folder) with a fresh head, completes, and
refuses folders it cannot use with a clear error."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import attnlab.tasks.classification as classification
from attnlab.cli.main import main
from attnlab.interop.hf_folder import from_pretrained
from attnlab.models import build_model
from attnlab.tasks.classification import ClassifySettings, train_classifier
from attnlab.tasks.encoder_init import encoder_with_new_head

WORDS = {"pos": "great lovely fine".split(), "neg": "awful poor bad".split()}
FILLER = "the movie plot was and a film".split()
HEADS = ("classifier.", "mlm_")


def write_data(folder, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 64), ("valid", 16), ("test", 16)):
        lines = []
        for _ in range(count):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
            words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
            lines.append(" ".join(words) + "\t" + label)
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("finetune") / "data")


@pytest.fixture(scope="module")
def mlm_folder(data, tmp_path_factory):
    text = tmp_path_factory.mktemp("mlm") / "text.txt"
    rows = (data / "train.tsv").read_text().splitlines() * 4
    text.write_text("\n".join(row.split("\t")[0] for row in rows) + "\n")
    out = tmp_path_factory.mktemp("mlm") / "run"
    assert main(["train", "mlm", "--text", str(text), "--out", str(out), "--vocab-size", "300",
                 "--block-size", "32", "--batch-size", "8", "--max-steps", "4",
                 "--warmup-steps", "2", "--save-every", "0"]) == 0
    return out


def encoder(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(HEADS)}


def weights_at_step_0(monkeypatch) -> dict:
    """Capture the model the classification task hands to the training loop (its optimizer is
    built from it just before the first step)."""
    seen = {}
    real_optimizer = classification.ClassificationTask.optimizer

    def optimizer(self, model):
        seen.update({k: v.clone() for k, v in model.state_dict().items()})
        return real_optimizer(self, model)

    monkeypatch.setattr(classification.ClassificationTask, "optimizer", optimizer)
    return seen


def assert_same(expected: dict, got: dict) -> None:
    assert expected, "nothing to compare"
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=0, rtol=0, msg=name)


def test_fine_tunes_an_mlm_folder_from_its_exact_weights(data, mlm_folder, tmp_path, monkeypatch,
                                                         capsys):
    start = weights_at_step_0(monkeypatch)
    out = tmp_path / "ft"
    assert main(["train", "classify", "--data", str(data), "--init", str(mlm_folder), "--out",
                 str(out), "--batch-size", "16", "--max-steps", "3", "--warmup-steps", "1",
                 "--save-every", "0"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    pretrained = from_pretrained(mlm_folder)
    assert_same(encoder(pretrained), start)  # every encoder weight, pooler included
    assert start["classifier.weight"].shape == (2, pretrained.config.d_model)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == str(mlm_folder) and metrics["labels"] == ["neg", "pos"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert (out / "tokenizer.json").read_text() == (mlm_folder / "tokenizer.json").read_text()
    tuned = from_pretrained(out)
    assert tuned.config.num_labels == 2
    assert not torch.equal(tuned.state_dict()["embed_tokens.weight"],
                           pretrained.state_dict()["embed_tokens.weight"])  # it trained


def test_the_new_head_is_fresh_and_the_rest_is_kept(mlm_folder):
    model = encoder_with_new_head(mlm_folder, num_labels=3)
    assert model.classifier.out_features == 3 and not hasattr(model, "mlm_bias")
    assert_same(encoder(from_pretrained(mlm_folder)), model.state_dict())


def bert_wordpiece(texts, path):
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=80,
                                                                   special_tokens=specials))
    tokenizer.save(str(path))
    return tokenizer


@pytest.mark.parametrize("architecture", ["BertForMaskedLM", "BertModel"])
def test_a_transformers_bert_folder_is_accepted(architecture, data, tmp_path, monkeypatch,
                                                caplog):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "hf"
    texts = [row.split("\t")[0] for row in (data / "train.tsv").read_text().splitlines()]
    tokenizer = bert_wordpiece(texts, tmp_path / "tokenizer.json")
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size() + 20, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=8)
    torch.manual_seed(0)
    hf = getattr(transformers, architecture)(config).eval()
    hf.save_pretrained(folder)
    (folder / "tokenizer.json").write_text((tmp_path / "tokenizer.json").read_text())
    start = weights_at_step_0(monkeypatch)
    metrics = train_classifier(ClassifySettings(
        data=str(data), init=str(folder), out=str(tmp_path / "ft"), batch_size=16, max_steps=2,
        warmup_steps=1, save_every=0))
    assert (tmp_path / "ft" / "metrics.json").is_file()
    # max_position_embeddings 8 < --max-len 128: capped with a warning, long texts truncated
    assert metrics["max_len"] == 8 and metrics["truncated_texts"]["train"] > 0
    assert "exceeds the model's max_seq_len 8" in caplog.text
    prefix = "bert." if architecture == "BertForMaskedLM" else ""
    hf_state = hf.state_dict()
    assert_same({"embed_tokens.weight": hf_state[f"{prefix}embeddings.word_embeddings.weight"],
                 "encoder.layers.1.self_attn.q_proj.weight":
                     hf_state[f"{prefix}encoder.layer.1.attention.self.query.weight"]}, start)
    if architecture == "BertModel":  # it has a pooler, which is kept too
        assert_same({"pooler.weight": hf_state["pooler.dense.weight"]}, start)


def test_folders_it_cannot_use_are_clear_errors(data, mlm_folder, tmp_path):
    def run(init):
        return train_classifier(ClassifySettings(data=str(data), init=str(init),
                                                 out=str(tmp_path / "x"), max_steps=1))

    with pytest.raises(FileNotFoundError, match="--init: .*missing is not a folder"):
        run(tmp_path / "missing")
    gpt = tmp_path / "gpt"
    build_model("gpt2-tiny").save_pretrained(gpt)
    with pytest.raises(ValueError, match="must hold a BERT encoder .*got model_type 'gpt2'"):
        run(gpt)
    bare = tmp_path / "bare"
    from_pretrained(mlm_folder).save_pretrained(bare)
    with pytest.raises(FileNotFoundError, match="tokenizer.json not found"):
        run(bare)
    bert_wordpiece(["a b c"], bare / "tokenizer.json")  # fits, but ...
    (bare / "tokenizer.json").write_text((bare / "tokenizer.json").read_text()
                                         .replace('"[CLS]"', '"[XLS]"'))
    with pytest.raises(ValueError, match="the tokenizer has no cls token"):
        run(bare)
    small = tmp_path / "small"
    build_model("bert-tiny", vocab_size=10).save_pretrained(small)
    bert_wordpiece(["a b c d e f g"], small / "tokenizer.json")
    with pytest.raises(ValueError, match="more than the model's vocab_size 10"):
        run(small)
