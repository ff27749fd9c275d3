"""EMNIST, KMNIST and SVHN loaders on small files written in each official format."""

import gzip
import struct
import zipfile

import numpy as np
import pytest

from kbench.data import load_dataset
from kbench.data import download as download_module
from kbench.errors import KbenchError

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def emnist_files(n_train=6, n_test=4):
    images = {k: RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8) for k, n in (("train", n_train), ("test", n_test))}
    labels = {"train": np.arange(n_train) % 3, "test": np.arange(n_test) % 3}
    files = {}
    for split in ("train", "test"):
        files[f"emnist-balanced-{split}-images-idx3-ubyte.gz"] = idx_bytes(images[split])
        files[f"emnist-balanced-{split}-labels-idx1-ubyte.gz"] = idx_bytes(labels[split])
    files["emnist-balanced-mapping.txt"] = b"0 48\n1 65\n2 97\n"
    return files, images


@pytest.mark.parametrize("layout", ["folder", "official zip"])
def test_emnist_idx_files_load_upright_with_character_names(tmp_path, layout):
    files, images = emnist_files()
    if layout == "folder":
        for name, payload in files.items():
            (tmp_path / name).write_bytes(payload)
    else:
        with zipfile.ZipFile(tmp_path / "gzip.zip", "w") as archive:
            for name, payload in files.items():
                archive.writestr(f"gzip/{name}", payload)
    data = load_dataset("emnist_balanced", tmp_path)
    assert data.x_train.shape == (6, 28, 28, 1) and data.x_test.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(data.x_train[0, :, :, 0], images["train"][0].T)  # stored transposed
    assert data.class_names == ["0", "A", "a"] and data.y_train.tolist() == [0, 1, 2, 0, 1, 2]


def test_truncated_idx_file_is_reported_by_name(tmp_path):
    files, _ = emnist_files()
    files["emnist-balanced-train-images-idx3-ubyte.gz"] = gzip.compress(gzip.decompress(files["emnist-balanced-train-images-idx3-ubyte.gz"])[:-10])
    for name, payload in files.items():
        (tmp_path / name).write_bytes(payload)
    with pytest.raises(KbenchError, match="emnist-balanced-train-images-idx3-ubyte.gz: header says"):
        load_dataset("emnist_balanced", tmp_path)


def test_kmnist_npz_files_load(tmp_path):
    arrays = {"train-imgs": RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8), "train-labels": np.arange(5),
              "test-imgs": RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8), "test-labels": np.arange(3)}
    for name, array in arrays.items():
        np.savez_compressed(tmp_path / f"kmnist-{name}.npz", array)
    data = load_dataset("kmnist", tmp_path)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10 and data.class_names[0] == "o"
    np.testing.assert_array_equal(data.x_test[..., 0], arrays["test-imgs"])


def test_svhn_mat_files_load_with_zero_for_label_ten(tmp_path):
    from scipy.io import savemat

    for split, n in (("train", 4), ("test", 2)):
        images = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": np.array([[10], [1], [2], [3]][:n])})
    data = load_dataset("svhn", tmp_path)
    assert data.x_train.shape == (4, 32, 32, 3) and data.y_train.tolist() == [0, 1, 2, 3]


def test_missing_local_file_names_file_folder_and_origin(tmp_path):
    with pytest.raises(KbenchError, match=r"svhn: train_32x32.mat is not in .*; download it from http://ufldl"):
        load_dataset("svhn", tmp_path)


def test_failed_download_says_what_to_do_offline(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(KbenchError, match="kmnist: download of .*kmnist-train-imgs.npz failed.*--data-dir FOLDER"):
        download_module.fetch("kmnist", "kmnist-train-imgs.npz", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/kmnist-train-imgs.npz", None, None)
