"""Image loaders: Debian's Fashion-MNIST, scikit-learn's digits, and a folder of class folders
(with every error the issue names: corrupt image, empty class folder, one class only)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from attnlab.data import image_folder, images
from attnlab.data.images import FASHION_MNIST_CLASSES, ImageSplit, decode_image, load_images
from attnlab.errors import ConfigError, DataError, MissingFileError

FASHION = images.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not FASHION.is_file(), reason="Debian package dataset-fashion-mnist is not "
                    "installed (make packages)")
def test_fashion_mnist_splits():
    splits = load_images("builtin:fashion-mnist", valid_fraction=0.1, seed=0)
    assert {k: tuple(s.images.shape) for k, s in splits.items()} == {
        "train": (54000, 1, 28, 28), "valid": (6000, 1, 28, 28), "test": (10000, 1, 28, 28)}
    for split, per_class in (("train", 5400), ("valid", 600), ("test", 1000)):
        s = splits[split]
        assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64
        assert s.labels.bincount().tolist() == [per_class] * 10  # stratified
        assert s.classes == FASHION_MNIST_CLASSES and len(s.sources) == len(s)
    assert splits["test"].labels[0].item() == 9  # the first t10k image is an ankle boot
    assert splits["test"].sources[:2] == ["fashion-mnist:test:0", "fashion-mnist:test:1"]
    assert not set(splits["train"].sources) & set(splits["valid"].sources)
    assert splits["train"].images.float().mean() > 50  # real pixels, not zeros


def test_fashion_mnist_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(MissingFileError, match="apt-get install dataset-fashion-mnist"):
        load_images("builtin:fashion-mnist")


def test_idx_reader_refuses_a_bad_file(tmp_path):
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + (np.array([2, 3], ">u4").tobytes())
                                   + bytes(range(6))))
    assert images.read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + np.array([9], ">u4").tobytes() + b"x"))
    with pytest.raises(DataError, match="short.gz.*9 bytes"):
        images.read_idx(short)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="plain.gz"):
        images.read_idx(plain)


def test_digits_split_is_stratified_and_deterministic():
    a = load_images("builtin:digits", seed=0)
    assert sum(len(s) for s in a.values()) == 1797
    assert a["train"].images.shape[1:] == (1, 8, 8) and a["train"].images.dtype == torch.uint8
    assert a["train"].images.max() == 255 and a["train"].classes == [str(d) for d in range(10)]
    for split, share in (("test", 0.2), ("valid", 0.08)):
        counts = a[split].labels.bincount(minlength=10).float()
        totals = sum(s.labels.bincount(minlength=10) for s in a.values()).float()
        assert torch.allclose(counts / totals, torch.full((10,), share), atol=0.02)
    b = load_images("builtin:digits", seed=0)
    c = load_images("builtin:digits", seed=1)
    assert a["valid"].sources == b["valid"].sources and torch.equal(a["train"].images,
                                                                    b["train"].images)
    assert a["valid"].sources != c["valid"].sources  # the seed picks the validation images
    assert a["test"].sources == c["test"].sources  # the test split is fixed
    big = load_images("builtin:digits", image_size=16, channels=3)["test"]
    assert big.images.shape == (len(a["test"]), 3, 16, 16)


def _image(path, size=(8, 6), mode="L", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, np.uint8)
    array[0, 0] = 255 - value
    Image.fromarray(array, mode).save(path)
    return path


def _folder(root, classes=("cat", "dog"), train=5, test=2, **kwargs):
    for c, name in enumerate(classes):
        for i in range(train):
            _image(root / "train" / name / f"{i}.png", value=40 * c + i, **kwargs)
        for i in range(test):
            _image(root / "test" / name / f"{i}.jpg", value=40 * c + i, **kwargs)
    return root


def test_image_folder_loads_and_carves_valid(tmp_path):
    root = _folder(tmp_path / "data")
    splits = load_images(str(root), valid_fraction=0.2, seed=0)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [8, 2, 4]
    train = splits["train"]
    assert isinstance(train, ImageSplit) and train.classes == ["cat", "dog"]
    assert train.images.shape == (8, 1, 6, 8) and train.images.dtype == torch.uint8
    assert splits["valid"].labels.tolist() == [0, 1]  # one per class
    first = splits["test"]
    assert first.sources[0].endswith("test/cat/0.jpg") and first.labels.tolist() == [0, 0, 1, 1]
    assert int(first.images[0, 0, 3, 3]) <= 8 and abs(int(first.images[2, 0, 3, 3]) - 40) <= 8
    resized = load_images(str(root), image_size=4, channels=3)["train"]
    assert resized.images.shape == (8, 3, 4, 4)
    _image(root / "train" / "cat" / "color.png", mode="RGB")
    assert load_images(str(root))["train"].images.shape[1] == 3  # one RGB file: 3 channels
    (root / "valid" / "dog").mkdir(parents=True)
    _image(root / "valid" / "dog" / "v.png")
    given = load_images(str(root))
    assert len(given["valid"]) == 1 and len(given["train"]) == 11  # DIR/valid is used as is


def test_decode_image(tmp_path):
    path = _image(tmp_path / "a.png", size=(10, 5), mode="RGB", value=7)
    assert decode_image(path, None, 3).shape == (3, 5, 10)
    grey = decode_image(path, 4, 1)
    assert grey.shape == (1, 4, 4) and grey.dtype == torch.uint8
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(wide)  # 16-bit greyscale
    assert decode_image(wide, None, 1).flatten().tolist() == [255] * 9
    with pytest.raises(ConfigError, match="channels"):
        decode_image(path, None, 2)


def test_corrupt_and_truncated_images_are_named(tmp_path):
    root = _folder(tmp_path / "data")
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_images(str(root))
    good = _image(tmp_path / "x.png", size=(64, 64), mode="RGB")
    bad.write_bytes(good.read_bytes()[:60])  # a header, then nothing
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_images(str(root), image_size=8, channels=1)


@pytest.mark.parametrize("case, message", [
    ("empty class", "train/dog: empty class folder"),
    ("one class", "only one class"),
    ("test class not in train", "test/bird: class 'bird' is not in"),
    ("no train", "no train folder"),
    ("no test", "no test folder"),
    ("no class folders", "train: no class folders"),
    ("mixed sizes", "--image-size"),
])
def test_folder_errors_name_the_place(tmp_path, case, message):
    root = _folder(tmp_path / "data")
    if case == "empty class":
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
        (root / "train" / "dog" / "notes.txt").write_text("x")
    elif case == "one class":
        for split in ("train", "test"):
            for f in (root / split / "dog").iterdir():
                f.unlink()
            (root / split / "dog").rmdir()
    elif case == "test class not in train":
        _image(root / "test" / "bird" / "0.png")
    elif case == "no train":
        (root / "train").rename(root / "training")
    elif case == "no test":
        (root / "test").rename(root / "testing")
    elif case == "no class folders":
        for name in ("cat", "dog"):
            (root / "train" / name).rename(root / f"{name}-old")
        _image(root / "train" / "loose.png")
    else:
        _image(root / "train" / "cat" / "big.png", size=(9, 9))
    with pytest.raises(DataError, match=message):
        load_images(str(root))


def test_bad_arguments(tmp_path):
    with pytest.raises(MissingFileError, match="no such folder"):
        load_images(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="builtin:fashion-mnist"):
        load_images("builtin:cifar")
    with pytest.raises(ConfigError, match="valid_fraction"):
        load_images("builtin:digits", valid_fraction=1.0)
    with pytest.raises(ConfigError, match="channels"):
        load_images("builtin:digits", channels=4)


def test_progress_bar_over_the_threshold(tmp_path, monkeypatch, capsys):
    root = _folder(tmp_path / "data")
    monkeypatch.setattr(image_folder, "PROGRESS_OVER", 3)
    load_images(str(root))
    assert "decoding 14 images" in capsys.readouterr().err
