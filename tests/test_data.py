import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from kbench.data import DATASETS, load_dataset
from kbench.data import cifar10 as cifar10_module
from kbench.paths import cache_dir
from kbench.data.image_folder import read_image_folder
from kbench.errors import KbenchError


def png_bytes(value: int, size=(6, 5)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_tree(splits=("train", "test"), classes=("cat", "ant"), per_class=2, size=(6, 5)) -> dict[str, bytes]:
    """{'root/train/cat/0.png': bytes, ...}; pixel value encodes the class index in sorted order."""
    files = {}
    for split in splits:
        for class_name in classes:
            for i in range(per_class):
                files[f"root/{split}/{class_name}/{i}.png"] = png_bytes(10 * sorted(classes).index(class_name), size)
    return files


def write_tar(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def write_zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in files.items():
            archive.writestr(name, payload)


def write_dir(path, files):
    for name, payload in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(payload)


@pytest.mark.parametrize("writer, filename", [(write_tar, "tree.tar.gz"), (write_zip, "tree.zip"), (write_dir, "tree")])
def test_image_folder_reads_dirs_and_archives_with_sorted_classes(tmp_path, writer, filename):
    source = tmp_path / filename
    if writer is write_dir:
        source.mkdir()
    writer(source, image_tree(splits=("train", "valid", "test")))
    data = read_image_folder(source, "tiny")
    assert data.class_names == ["ant", "cat"]
    assert data.x_train.shape == (4, 5, 6, 3) and data.x_train.dtype == np.uint8
    assert data.x_val.shape == (4, 5, 6, 3) and data.x_test.shape == (4, 5, 6, 3)
    # the label matches the pixel value written for that class
    np.testing.assert_array_equal(data.x_train[:, 0, 0, 0], data.y_train * 10)


def test_image_folder_rejects_mixed_sizes_naming_the_file(tmp_path):
    files = image_tree()
    files["root/train/cat/odd.png"] = png_bytes(0, size=(9, 9))
    write_tar(tmp_path / "t.tar.gz", files)
    with pytest.raises(KbenchError, match="odd.png is 9x9"):
        read_image_folder(tmp_path / "t.tar.gz", "tiny")


def test_image_folder_rejects_unreadable_images_naming_the_file(tmp_path):
    files = image_tree()
    files["root/train/cat/broken.png"] = b"not an image"
    write_tar(tmp_path / "t.tar.gz", files)
    with pytest.raises(KbenchError, match="cannot read image root/train/cat/broken.png"):
        read_image_folder(tmp_path / "t.tar.gz", "tiny")


def test_image_folder_without_test_split_says_what_is_expected(tmp_path):
    write_tar(tmp_path / "t.tar.gz", image_tree(splits=("train",)))
    with pytest.raises(KbenchError, match="no images under test/<class>/"):
        read_image_folder(tmp_path / "t.tar.gz", "tiny")


def write_official_cifar(path, per_batch=4):
    """A tiny archive in the official cifar-10-python.tar.gz format (pickled dicts of bytes keys)."""
    rng = np.random.default_rng(0)
    files = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, per_batch))}
        files[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch)
    write_tar(path, files)
    return files


def test_cifar10_official_archive_is_decoded_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path / "cache"))
    files = write_official_cifar(tmp_path / "cifar-10-python.tar.gz")
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    first = pickle.loads(files["cifar-10-batches-py/data_batch_1"])
    # channel-first rows become NHWC pixels
    np.testing.assert_array_equal(data.x_train[0, :, :, 0].ravel(), first[b"data"][0, :1024])
    assert data.y_train[0] == first[b"labels"][0]
    assert data.class_names[0] == "airplane" and data.num_classes == 10
    assert len(list(cache_dir().glob("cifar10-*.npz"))) == 1
    again = load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_cifar10_missing_locally_names_the_files_to_put_there(tmp_path):
    with pytest.raises(KbenchError, match=r"no cifar-10-python.tar.gz or cifar10-jpeg.tar.gz.*in " + str(tmp_path)):
        load_dataset("cifar10", tmp_path)


def test_cifar10_download_failure_offline_says_what_to_do(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.delenv("KBENCH_DATA_DIR", raising=False)
    with pytest.raises(KbenchError, match="download from .* failed.*--data-dir FOLDER or set KBENCH_DATA_DIR"):
        cifar10_module.load_cifar10(None)


def test_digits_is_bundled_and_stratified():
    data = load_dataset("digits")
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.max() == 255 and np.bincount(data.y_test).min() >= 43


def test_registry_lists_both_builtin_data_sets():
    assert {"cifar10", "digits"} <= set(DATASETS)


def test_shared_cifar10_jpeg_archive_loads_in_official_label_order(cifar_data_dir):
    data = load_dataset("cifar10", cifar_data_dir)
    assert data.x_train.shape == (50_000, 32, 32, 3) and data.x_test.shape == (10_000, 32, 32, 3)
    assert np.bincount(data.y_train).tolist() == [5000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.class_names == cifar10_module.CLASS_NAMES
