"""A user's folder of captioned images: captions.tsv split by image, train/valid/test.tsv, and
every error naming the file and line (no tab, empty caption, missing or unreadable image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnlab.data.captions import BUILTIN_CAPTIONED, CaptionedImages, load_captioned
from attnlab.errors import ConfigError, DataError, MissingFileError


def write_png(path, value, size=(8, 8), mode="RGB"):
    rng = np.random.default_rng(value)
    if mode == "L":
        array = rng.integers(0, 256, size[::-1], dtype=np.uint8)
    else:
        array = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def make_folder(root, n=20, mode="RGB", captions_per_image=1):
    root.mkdir(exist_ok=True)
    lines = ["file\tcaption"]
    for i in range(n):
        write_png(root / f"img{i}.png", i, mode=mode)
        lines += [f"img{i}.png\ta picture number {i} take {k}" for k in range(captions_per_image)]
    (root / "captions.tsv").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return root


def test_captions_tsv_is_split_by_image(tmp_path):
    root = make_folder(tmp_path / "d", n=20, captions_per_image=2)
    splits = load_captioned(str(root), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 32, "valid": 4, "test": 4}
    train = splits["train"]
    assert isinstance(train, CaptionedImages)
    assert train.images.shape == (32, 3, 8, 8) and train.images.dtype == torch.uint8
    files = {s: set(part.sources) for s, part in splits.items()}
    assert not files["train"] & files["test"] and not files["valid"] & files["test"]
    assert splits["test"].groups == splits["test"].sources  # a file is what a split keeps apart
    # pixels come through unchanged and match their caption's file
    source = train.sources[0]
    index = int(source.split("img")[-1].split(".")[0])
    assert torch.equal(train.images[0].permute(1, 2, 0),
                       torch.from_numpy(np.array(Image.open(source))))
    assert train.captions[0].startswith(f"a picture number {index} ")
    again = load_captioned(str(root), seed=0)
    assert again["test"].sources == splits["test"].sources
    assert load_captioned(str(root), seed=1)["test"].sources != splits["test"].sources
    assert load_captioned(str(root), image_size=4)["valid"].images.shape[1:] == (3, 4, 4)


def test_grey_folder_loads_as_one_channel(tmp_path):
    splits = load_captioned(str(make_folder(tmp_path / "g", n=10, mode="L")))
    assert splits["train"].images.shape[1:] == (1, 8, 8)


def test_train_test_tsv_layout(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    for i in range(12):
        write_png(root / f"{i}.png", i)
    (root / "train.tsv").write_text("".join(f"{i}.png\tcat {i}\n" for i in range(10)))
    (root / "test.tsv").write_text("10.png\tdog\n11.png\tbird\n")
    splits = load_captioned(str(root))
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "valid": 1, "test": 2}
    assert splits["test"].captions == ["dog", "bird"]
    (root / "valid.tsv").write_text("0.png\tcat again\n")
    splits = load_captioned(str(root))
    assert {k: len(v) for k, v in splits.items()} == {"train": 10, "valid": 1, "test": 2}
    (root / "test.tsv").unlink()
    with pytest.raises(DataError, match="train.tsv but no test.tsv"):
        load_captioned(str(root))


@pytest.mark.parametrize("line, message", [
    ("img1.png a caption with no tab", r"captions.tsv:3: no tab"),
    ("img1.png\t   ", r"captions.tsv:3: empty caption for img1.png"),
    ("nowhere.png\ta caption", r"captions.tsv:3: no image .*nowhere.png"),
    ("\tcaption without a file", r"captions.tsv:3: empty file name"),
    ("bad.png\ta broken picture", r"captions.tsv:3: .*bad.png: not a readable image"),
])
def test_errors_name_the_file_and_line(tmp_path, line, message):
    root = make_folder(tmp_path / "e", n=5)
    (root / "bad.png").write_bytes(b"\x89PNG not really")
    lines = (root / "captions.tsv").read_text().splitlines()
    lines.insert(2, line)  # line 3 (line 1 is the header)
    (root / "captions.tsv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=message):
        load_captioned(str(root))


def test_folder_problems(tmp_path):
    with pytest.raises(MissingFileError, match="no such folder"):
        load_captioned(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no captions.tsv"):
        load_captioned(str(tmp_path / "empty"))
    root = make_folder(tmp_path / "sizes", n=6)
    write_png(root / "img3.png", 3, size=(10, 6))
    with pytest.raises(DataError, match=r"img3.png is 10x6.*--image-size"):
        load_captioned(str(root))
    assert load_captioned(str(root), image_size=8)["train"].images.shape[1:] == (3, 8, 8)
    few = make_folder(tmp_path / "few", n=2)
    with pytest.raises(DataError, match="2 image"):
        load_captioned(str(few))
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "captions.tsv").write_bytes("a.png\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_captioned(str(tmp_path / "latin1"))


def test_builtin_names_are_checked():
    assert BUILTIN_CAPTIONED == ("emoji", "digit-scenes")
    with pytest.raises(ConfigError, match="builtin:emoji, builtin:digit-scenes"):
        load_captioned("builtin:cats")
    with pytest.raises(ConfigError, match="image_size"):
        load_captioned("builtin:digit-scenes", image_size=0)
