"""A registered data set's fingerprint follows every file its loader reads: an image added to a class
folder, a replaced label or test file, retrains the trial and marks the old result stale."""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kbench.cli import main
from kbench.data import file_hashes, load_dataset
from kbench.data.cifar10 import CLASS_NAMES
from kbench.data.fingerprint import data_fingerprint
from kbench.results.trial_folder import Status


def bmp(value: int) -> bytes:
    """An 8x8 image; uncompressed, so every one has the same size."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, format="BMP")
    return buffer.getvalue()


def write_cifar_tree(data_dir):
    """data_dir/cifar10/{train,test}/<class>/<n>.bmp as the cifar10 loader reads it: 8x8 images, 3 + 1 per class."""
    for split, count in (("train", 3), ("test", 1)):
        for index, name in enumerate(CLASS_NAMES):
            folder = data_dir / "cifar10" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.bmp").write_bytes(bmp(20 * index + i))
    return data_dir / "cifar10"


def write_kmnist(data_dir, test_labels=(0, 1, 2, 3)):
    """The four official kmnist-*.npz files (one 'arr_0' array each), 8x8 images."""
    rng = np.random.default_rng(0)
    arrays = {"train-imgs": rng.integers(0, 256, (20, 8, 8), np.uint8), "train-labels": np.arange(20) % 10,
              "test-imgs": rng.integers(0, 256, (4, 8, 8), np.uint8), "test-labels": np.array(test_labels)}
    for name, array in arrays.items():
        with open(data_dir / f"kmnist-{name}.npz", "wb") as file:  # np.savez would add ".npz" to a str path
            np.savez(file, array)


def write_svhn(data_dir, test_labels=(1, 2, 10)):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, labels in (("train", [1, 2, 3, 10]), ("test", list(test_labels))):
        images = rng.integers(0, 256, (8, 8, 3, len(labels)), np.uint8)
        savemat(data_dir / f"{split}_32x32.mat", {"X": images, "y": np.array(labels, np.uint8)[:, None]})


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_emnist(data_dir, test_labels=(0, 1, 2)):
    rng = np.random.default_rng(0)
    for split, labels in (("train", [0, 1, 2, 0]), ("test", list(test_labels))):
        (data_dir / f"emnist-balanced-{split}-images-idx3-ubyte.gz").write_bytes(
            idx(rng.integers(0, 256, (len(labels), 8, 8))))
        (data_dir / f"emnist-balanced-{split}-labels-idx1-ubyte.gz").write_bytes(idx(np.array(labels)))
    (data_dir / "emnist-balanced-mapping.txt").write_text("0 48\n1 65\n2 97\n")


def fingerprint(name, data_dir) -> str:
    return data_fingerprint(load_dataset(name, data_dir))


@pytest.fixture
def trusted_stats(monkeypatch):
    """Files written by a test are seconds old, too new for their stats to be trusted and cached
    (file_hashes.RECENT_NS); trust them, so that the tests see the stat cache at work."""
    monkeypatch.setattr(file_hashes, "RECENT_NS", -1)


def counting_hashes(monkeypatch) -> list:
    """The paths file_hashes reads from here on."""
    read, sha256_of = [], file_hashes.sha256_of
    monkeypatch.setattr(file_hashes, "sha256_of", lambda path: read.append(path) or sha256_of(path))
    return read


def test_an_image_added_removed_or_replaced_in_a_cifar10_tree_changes_the_fingerprint(tmp_path, monkeypatch,
                                                                                       trusted_stats):
    tree = write_cifar_tree(tmp_path)
    first = fingerprint("cifar10", tmp_path)
    read = counting_hashes(monkeypatch)
    assert fingerprint("cifar10", tmp_path) == first and read == []  # unchanged: stats only, nothing re-read

    (tree / "train" / "cat" / "new.bmp").write_bytes(bmp(255))
    added = fingerprint("cifar10", tmp_path)
    assert added != first and [p.name for p in read] == ["new.bmp"]  # only the new file is read
    (tree / "train" / "cat" / "new.bmp").unlink()
    assert fingerprint("cifar10", tmp_path) == first

    # Same size, same modification time, other pixels: the change time gives it away.
    picture = tree / "test" / "dog" / "0.bmp"
    before = picture.stat()
    replacement = bmp(254)
    assert len(replacement) == before.st_size
    picture.write_bytes(replacement)
    os.utime(picture, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert picture.stat().st_size == before.st_size and picture.stat().st_mtime_ns == before.st_mtime_ns
    assert fingerprint("cifar10", tmp_path) not in (first, added)


@pytest.mark.parametrize("name, writer, label_file", [
    ("kmnist", write_kmnist, "kmnist-test-labels.npz"),
    ("svhn", write_svhn, "test_32x32.mat"),
    ("emnist_balanced", write_emnist, "emnist-balanced-test-labels-idx1-ubyte.gz"),
])
def test_a_replaced_test_or_label_file_changes_the_fingerprint(tmp_path, trusted_stats, name, writer, label_file):
    writer(tmp_path)
    first = fingerprint(name, tmp_path)
    assert fingerprint(name, tmp_path) == first
    others = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir() if path.name != label_file}
    replaced = tmp_path / "replaced"
    replaced.mkdir()
    writer(replaced, test_labels=(2, 1, 0, 3)[: len(load_dataset(name, tmp_path).y_test)])
    os.replace(replaced / label_file, tmp_path / label_file)  # as a fresh download or a copy over it would
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir() if path.name in others} == others
    assert fingerprint(name, tmp_path) != first


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "torch",
                    reason="four one-epoch trials; fingerprints do not depend on the backend, so one is enough")
def test_changed_data_retrains_and_the_old_results_show_as_stale(tmp_path, write_experiment, logs_dir, capsys):
    data_dir = tmp_path / "data"
    tree = write_cifar_tree(data_dir)
    write_kmnist(data_dir)
    path = write_experiment("fingerprints", """
        EXPERIMENT = Experiment(
            description="one tiny trial on each of two registered data sets",
            base=TrialConfig(dataset="cifar10", model="a1", epochs=1, batch_size=16),
            grid={"dataset": ["cifar10", "kmnist"]},
        )
    """)
    run = ["run", str(path), "--data-dir", str(data_dir), "--logs-dir", str(logs_dir), "--quiet"]
    assert main(run) == 0 and "trained 2, skipped 0" in capsys.readouterr().out
    assert main(run) == 0 and "trained 0, skipped 2" in capsys.readouterr().out

    (tree / "train" / "cat" / "new.bmp").write_bytes(bmp(255))  # an image added to a class folder
    replaced = tmp_path / "replaced"
    replaced.mkdir()
    write_kmnist(replaced, test_labels=(3, 2, 1, 0))
    os.replace(replaced / "kmnist-test-labels.npz", data_dir / "kmnist-test-labels.npz")  # a label file replaced
    assert main(run) == 0 and "trained 2, skipped 0" in capsys.readouterr().out

    assert main(["results", str(path), "--all", "--logs-dir", str(logs_dir), "--format", "csv"]) == 0
    every = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert sorted(zip(every["dataset"], every["status"])) == [
        ("cifar10", Status.FINISHED), ("cifar10", Status.STALE), ("kmnist", Status.FINISHED), ("kmnist", Status.STALE)]
