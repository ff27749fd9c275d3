"""kbench.data.sources: Roboflow CSV exports, folder trees and archives listed as FileDatasets."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kbench.data import archives, sources
from kbench.data.archives import extract_archive
from kbench.data.sources import read_image_files
from kbench.errors import KbenchError

COLORS = {"ants": (255, 0, 0), "bees": (0, 255, 0), "cats": (0, 0, 255)}


def image(path: Path, color=(128, 128, 128)) -> Path:
    """An 8x8 image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def broken(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


def truncated(path: Path) -> Path:
    """A JPEG cut in half: its header is intact (PIL's verify() passes), its pixels cannot be decoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # enough data to cut
    Image.fromarray(noise).save(path, format="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def roboflow(root: Path, rows: dict[str, list[str]], header: str = "filename, bees, ants", images: bool = True) -> Path:
    """A Roboflow CSV export: per split a _classes.csv of `rows` ("name.jpg,1,0") and the images it lists."""
    for split, lines in rows.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "_classes.csv").write_text("\n".join([header, *lines]) + "\n")
        if images:
            for line in lines:
                image(folder / line.split(",")[0])
    return root


def standard_export(root: Path) -> Path:
    return roboflow(root, {
        "train": ["b1.jpg,1,0", "a1.jpg,0,1", "b2.jpg,1,0", "a2.jpg,0,1"],
        "valid": ["b3.jpg,1,0", "a3.jpg,0,1"],
        "test": ["a4.jpg,0,1", "b4.jpg,1,0"],
    })


def tree(root: Path, splits=("train", "val", "test"), classes=("ants", "bees", "cats"), per_class=2) -> Path:
    """split/class/image files; a class's images carry its colour (checked after decoding labels)."""
    for split in splits:
        for name in classes:
            for i in range(per_class):
                image(root / split / name / f"{split}-{name}-{i}.png", COLORS[name])
    return root


def label_names(data, split) -> dict[str, str]:
    """{file name: class name} of one split."""
    part = getattr(data, split)
    return {Path(p).name: data.class_names[int(label)] for p, label in zip(part.paths, part.labels)}


# --------------------------------------------------------------------------- Roboflow


def test_roboflow_export_keeps_csv_class_order_and_strips_header_spaces(tmp_path):
    data = read_image_files(standard_export(tmp_path / "ants-bees"))
    assert data.class_names == ["bees", "ants"] and data.name == "ants-bees" and data.source == str(tmp_path / "ants-bees")
    assert label_names(data, "train") == {"b1.jpg": "bees", "a1.jpg": "ants", "b2.jpg": "bees", "a2.jpg": "ants"}
    assert label_names(data, "val") == {"b3.jpg": "bees", "a3.jpg": "ants"}
    assert label_names(data, "test") == {"a4.jpg": "ants", "b4.jpg": "bees"}
    assert data.train.labels.dtype == np.int64 and not data.multi_label and data.skipped == ()
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in data.train.paths + data.val.paths + data.test.paths)


def test_splits_are_shuffled_deterministically(tmp_path):
    tree(tmp_path / "d", per_class=4)
    first, second = read_image_files(tmp_path / "d"), read_image_files(tmp_path / "d")
    assert first.train.paths == second.train.paths
    assert list(first.train.paths) != sorted(first.train.paths)  # a shuffled order, so the first N mix classes


def test_roboflow_multi_label_rows_become_multi_hot(tmp_path):
    roboflow(tmp_path, {"train": ["x.jpg,1,1", "y.jpg,0,1"], "test": ["z.jpg,1,0"], "valid": ["w.jpg,1,1"]})
    data = read_image_files(tmp_path, multi_label=True)
    labels = dict(zip(data.train.names, data.train.labels.tolist()))
    assert data.multi_label and data.train.labels.dtype == np.float32
    assert labels == {"x.jpg": [1.0, 1.0], "y.jpg": [0.0, 1.0]}


def test_roboflow_identical_duplicate_row_is_kept_once(tmp_path):
    roboflow(tmp_path, {"train": ["x.jpg,1,0", "x.jpg,1,0", "y.jpg,0,1"], "test": ["z.jpg,1,0"]})
    data = read_image_files(tmp_path)
    assert sorted(data.train.names) == ["x.jpg", "y.jpg"] and data.val is None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"train": ["x.jpg,1,0", "y.jpg,0,0"]}, r"train[/\\]_classes.csv row 3: y.jpg has no class set"),
        ({"train": ["x.jpg,1,0", "y.jpg,1,1"]}, r"train[/\\]_classes.csv row 3: y.jpg has 2 classes set"),
        ({"train": ["x.jpg,2,0"]}, r"train[/\\]_classes.csv row 2: value '2' is not 0 or 1"),
        ({"train": ["x.jpg,1,0", "y.jpg,0,1", "x.jpg,0,1"]},
         r"train[/\\]_classes.csv rows 2 and 4: x.jpg is listed twice with different classes"),
        ({"valid": ["v.jpg,1,0", "gone.jpg,0,1"]}, r"valid[/\\]_classes.csv row 3: gone.jpg is not in"),
        ({"test": ["bad.jpg,1,0"]}, r"test[/\\]_classes.csv row 2: bad.jpg: cannot read the image"),
    ],
    ids=["no class", "several classes", "bad value", "conflicting duplicate", "missing file", "unreadable image"],
)
def test_roboflow_row_problems_name_csv_and_row(tmp_path, rows, message):
    standard_export(tmp_path)
    roboflow(tmp_path, rows)
    (tmp_path / "valid" / "gone.jpg").unlink(missing_ok=True)
    if (tmp_path / "test" / "bad.jpg").exists():
        broken(tmp_path / "test" / "bad.jpg")
    with pytest.raises(KbenchError, match=message) as raised:
        read_image_files(tmp_path)
    text = str(raised.value)
    assert text.count("--skip-bad") == 1 and f"`kbench data check {tmp_path}` lists every problem" in text
    assert text.count("fix or remove it") + text.count("delete the row") <= 1  # each piece of advice once


def test_roboflow_structural_problems_name_the_csv(tmp_path):
    roboflow(tmp_path, {"train": ["x.jpg,1"], "test": ["y.jpg,1"]}, header="file, ants")
    with pytest.raises(KbenchError, match=r"train[/\\]_classes.csv: no 'filename' column"):
        read_image_files(tmp_path, skip_bad=True)
    roboflow(tmp_path, {"train": ["x.jpg,1,0"]}, header="filename,ants,bees")
    roboflow(tmp_path, {"test": ["y.jpg,1,0"]}, header="filename,ants,wasps")
    with pytest.raises(KbenchError, match=r"test[/\\]_classes.csv: classes ants, wasps differ from train's ants, bees"):
        read_image_files(tmp_path, skip_bad=True)


def test_roboflow_skip_bad_lists_each_left_out_file_with_csv_row(tmp_path):
    standard_export(tmp_path)
    roboflow(tmp_path, {"train": ["b1.jpg,1,0", "a1.jpg,0,1", "none.jpg,0,0", "two.jpg,1,1", "odd.jpg,x,0",
                                  "gone.jpg,1,0", "bad.jpg,1,0", "dup.jpg,1,0", "dup.jpg,0,1"]})
    (tmp_path / "train" / "gone.jpg").unlink()
    broken(tmp_path / "train" / "bad.jpg")
    with pytest.warns(UserWarning, match=r"not listed .*a2.jpg, b2.jpg"):  # left over from standard_export
        data = read_image_files(tmp_path, skip_bad=True)
    assert sorted(data.train.names) == ["a1.jpg", "b1.jpg"]
    reasons = {Path(s.path).name: s.reason for s in data.skipped}
    assert sorted(reasons) == ["bad.jpg", "dup.jpg", "gone.jpg", "none.jpg", "odd.jpg", "two.jpg"]
    assert "_classes.csv row 4" in reasons["none.jpg"] and "_classes.csv rows 9 and 10" in reasons["dup.jpg"]
    assert all(os.path.isabs(s.path) for s in data.skipped)
    kinds = {Path(s.path).name: s.kind for s in data.skipped}
    assert kinds == {
        "none.jpg": sources.NO_CLASS_PROBLEM, "two.jpg": sources.SEVERAL_CLASSES_PROBLEM,
        "odd.jpg": sources.BAD_VALUE_PROBLEM, "gone.jpg": sources.MISSING_PROBLEM,
        "bad.jpg": sources.UNREADABLE_PROBLEM, "dup.jpg": sources.CONFLICTING_ROWS_PROBLEM,
    }


def test_truncated_jpeg_is_left_out_under_skip_bad_only(tmp_path):
    path = truncated(tmp_path / "train" / "bees" / "cut.jpg")
    with Image.open(path) as opened:
        opened.verify()  # the header check alone does not see it
    with Image.open(path) as opened, pytest.raises(OSError, match="truncated"):
        opened.convert("RGB")
    tree(tmp_path, splits=("train", "test"), classes=("ants", "bees"))
    # Without skip_bad only headers are read (fast); the file stays in and would fail when decoded.
    assert "cut.jpg" in read_image_files(tmp_path).train.names
    data = read_image_files(tmp_path, skip_bad=True)
    assert "cut.jpg" not in data.train.names and len(data.train) == 4
    (skipped,) = data.skipped
    assert skipped.path == str(path) and skipped.kind == sources.UNREADABLE_PROBLEM and "truncated" in skipped.reason


def test_layout_is_recorded(tmp_path):
    assert read_image_files(standard_export(tmp_path / "export")).layout == sources.ROBOFLOW_LAYOUT
    assert read_image_files(tree(tmp_path / "split", splits=("train", "test"))).layout == sources.SPLIT_TREE_LAYOUT
    for name in ("ants", "bees"):
        for i in range(3):
            image(tmp_path / "flat" / name / f"{name}{i}.png")
    assert read_image_files(tmp_path / "flat").layout == sources.CLASS_TREE_LAYOUT


def test_problems_that_empty_a_split_are_carried_by_the_error(tmp_path):
    tree(tmp_path, splits=("train", "test"), per_class=1)
    for name in ("ants", "bees", "cats"):
        (tmp_path / "test" / name / f"test-{name}-0.png").unlink()
        truncated(tmp_path / "test" / name / f"test-{name}-0.jpg")
    with pytest.raises(sources.UnusableDataError, match="test split has no usable images after skipping 3") as raised:
        read_image_files(tmp_path, skip_bad=True)
    assert [s.kind for s in raised.value.skipped] == [sources.UNREADABLE_PROBLEM] * 3


def test_roboflow_unlisted_images_are_reported_once(tmp_path):
    standard_export(tmp_path)
    for name in ("extra1.jpg", "extra2.jpg"):
        image(tmp_path / "train" / name)
    with pytest.warns(UserWarning, match=r"_classes.csv: 2 image\(s\) .* not listed .*extra1.jpg, extra2.jpg") as caught:
        data = read_image_files(tmp_path)
    assert len([w for w in caught if "not listed" in str(w.message)]) == 1 and len(data.train) == 4


# --------------------------------------------------------------------------- folder trees


def test_split_tree_sorts_classes_and_labels_by_folder(tmp_path):
    tree(tmp_path / "pets", classes=("cats", "ants", "bees"))
    (tmp_path / "pets" / "train" / "ants" / "notes.txt").write_text("not an image")
    data = read_image_files(tmp_path / "pets")
    assert data.class_names == ["ants", "bees", "cats"] and len(data.train) == len(data.val) == len(data.test) == 6
    for split in ("train", "val", "test"):
        for name, class_name in label_names(data, split).items():
            assert name.split("-")[1] == class_name
    assert all(Path(p).is_file() for p in data.train.paths)


def test_split_tree_without_test_uses_val_as_test(tmp_path):
    tree(tmp_path, splits=("train", "valid"))
    with pytest.warns(UserWarning, match=r"no test/ folder; valid/ is used as the test split"):
        data = read_image_files(tmp_path)
    assert data.val is None and all("valid-" in name for name in data.test.names)


def test_split_tree_class_missing_from_a_split_warns(tmp_path):
    tree(tmp_path, splits=("train",))
    tree(tmp_path, splits=("val", "test"), classes=("ants", "bees"))
    with pytest.warns(UserWarning) as caught:
        data = read_image_files(tmp_path)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and "no images for class cats in the test split" in messages[0]
    assert "no images for class cats in the val split" in messages[1]
    assert data.class_names == ["ants", "bees", "cats"]


def test_split_tree_problems_name_the_file_or_class(tmp_path):
    tree(tmp_path, splits=("train", "test"), classes=("ants", "bees"))
    image(tmp_path / "test" / "wasps" / "w.png")
    with pytest.raises(KbenchError, match=r"test: class folder wasps/ is not in train/"):
        read_image_files(tmp_path)
    (tmp_path / "test" / "wasps" / "w.png").unlink()
    broken(tmp_path / "train" / "bees" / "broken.png")
    with pytest.raises(KbenchError, match=r"broken.png: cannot read the image"):
        read_image_files(tmp_path)
    data = read_image_files(tmp_path, skip_bad=True)
    assert [Path(s.path).name for s in data.skipped] == ["broken.png"] and len(data.train) == 4


def test_split_tree_multi_label_gives_one_hot_rows(tmp_path):
    data = read_image_files(tree(tmp_path, splits=("train", "test")), multi_label=True)
    assert data.train.labels.shape == (6, 3) and data.train.labels.dtype == np.float32
    assert (data.train.labels.sum(axis=1) == 1).all()


def test_class_tree_is_split_per_class_with_a_fixed_seed(tmp_path):
    for name in ("ants", "bees"):
        for i in range(10):
            image(tmp_path / "flat" / name / f"{name}{i}.png")
    data = read_image_files(tmp_path / "flat")
    assert data.class_names == ["ants", "bees"]
    for split, expected in (("train", 8), ("val", 1), ("test", 1)):
        part = getattr(data, split)
        assert np.bincount(part.labels, minlength=2).tolist() == [expected, expected]
        assert all(Path(p).name.startswith(data.class_names[int(c)]) for p, c in zip(part.paths, part.labels))
    all_paths = data.train.paths + data.val.paths + data.test.paths
    assert len(set(all_paths)) == 20
    assert read_image_files(tmp_path / "flat").test.paths == data.test.paths
    no_val = read_image_files(tmp_path / "flat", split_fractions=(0.7, 0.0, 0.3))
    assert no_val.val is None and len(no_val.test) == 6


def test_class_tree_class_too_small_for_train_and_test_errors(tmp_path):
    image(tmp_path / "ants" / "a0.png")
    image(tmp_path / "ants" / "a1.png")
    image(tmp_path / "bees" / "b0.png")
    with pytest.raises(KbenchError, match=r"bees: class bees has 1 readable image"):
        read_image_files(tmp_path)
    with pytest.raises(KbenchError, match=r"split_fractions"):
        read_image_files(tmp_path, split_fractions=(0.5, 0.1, 0.1))


def test_unknown_layout_lists_the_accepted_ones(tmp_path):
    image(tmp_path / "loose.png")
    with pytest.raises(KbenchError, match=r"found no images in a layout .*Roboflow.*train/<class>/<image>.*<class>/<image>"):
        read_image_files(tmp_path)
    with pytest.raises(KbenchError, match=r"nowhere: no such file or folder"):
        read_image_files(tmp_path / "nowhere")


def test_layout_problems_raise_even_with_skip_bad(tmp_path):
    tree(tmp_path / "a", splits=("test",))
    with pytest.raises(KbenchError, match=r"a: has test/ but no train/ folder"):
        read_image_files(tmp_path / "a", skip_bad=True)
    tree(tmp_path / "b", splits=("train", "val", "valid"))
    with pytest.raises(KbenchError, match=r"b: both val/ and valid/ are there"):
        read_image_files(tmp_path / "b", skip_bad=True)
    tree(tmp_path / "c", splits=("train", "test"))
    (tmp_path / "c" / "train" / "wasps").mkdir()
    with pytest.raises(KbenchError, match=r"train: class folder wasps/ holds no images"):
        read_image_files(tmp_path / "c", skip_bad=True)
    tree(tmp_path / "d", splits=("train",))
    with pytest.raises(KbenchError, match=r"d: has train/ but no test/ or valid/ folder"):
        read_image_files(tmp_path / "d", skip_bad=True)
    tree(tmp_path / "e", splits=("train", "test"), per_class=1)
    for name in ("ants", "bees", "cats"):
        broken(tmp_path / "e" / "test" / name / f"test-{name}-0.png")
    with pytest.raises(KbenchError, match=r"the test split has no usable images after skipping 3 bad file"):
        read_image_files(tmp_path / "e", skip_bad=True)


def test_single_wrapper_folder_is_descended(tmp_path):
    tree(tmp_path / "outer" / "inner", splits=("train", "test"))
    assert read_image_files(tmp_path / "outer").class_names == ["ants", "bees", "cats"]


# --------------------------------------------------------------------------- archives


def zip_tree(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as opened:
        for path in sorted(folder.rglob("*")):
            opened.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def relative_labels(data) -> dict[str, str]:
    return {
        f"{split}/{'/'.join(Path(p).parts[-3:])}": data.class_names[int(c)]
        for split in ("train", "val", "test")
        for p, c in zip(getattr(data, split).paths, getattr(data, split).labels)
    }


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archives_read_the_same_as_the_folder(tmp_path, kind):
    folder = tree(tmp_path / "pets")
    archive = tmp_path / f"pets.{kind}"
    if kind == "zip":
        zip_tree(folder, archive)
    else:
        with tarfile.open(archive, "w:gz") as opened:
            opened.add(folder, arcname="pets")
    from_folder = read_image_files(folder)
    from_archive = read_image_files(archive, extract_dir=tmp_path / "x")
    assert from_archive.name == "pets" and from_archive.source == str(archive)
    assert relative_labels(from_archive) == relative_labels(from_folder)
    assert all(p.startswith(str(tmp_path / "x")) and os.path.isfile(p) for p in from_archive.train.paths)


def test_archive_is_extracted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path / "cache"))
    archive = zip_tree(tree(tmp_path / "pets", splits=("train", "test")), tmp_path / "pets.zip")
    first = read_image_files(archive)
    assert first.train.paths[0].startswith(str(tmp_path / "cache" / "extracted" / "pets-"))

    def fail(*args):
        raise AssertionError("extracted a second time")

    monkeypatch.setattr(archives, "_extract_checked", fail)
    assert read_image_files(archive).train.paths == first.train.paths


def test_interrupted_extraction_is_not_taken_for_a_finished_one(tmp_path):
    archive = zip_tree(tree(tmp_path / "pets", splits=("train", "test")), tmp_path / "pets.zip")
    target = tmp_path / "extracted" / "pets"
    leftover = target.parent / f".{target.name}.partial-killed"
    image(leftover / "pets" / "train" / "ants" / "only.png")
    data = read_image_files(archive, extract_dir=target)
    assert len(data.train) == 6 and all(p.startswith(str(target)) for p in data.train.paths)


def test_corrupt_archive_names_the_archive(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(KbenchError, match=r"broken.tar.gz: cannot"):
        read_image_files(archive, extract_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def unsafe_tar(path: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    with tarfile.open(path, "w") as opened:
        good = tarfile.TarInfo("data/train/ants/ok.png")
        good.size = 2
        opened.addfile(good, io.BytesIO(b"ok"))
        member.size = len(payload)
        opened.addfile(member, io.BytesIO(payload))
    return path


def symlink_member() -> tarfile.TarInfo:
    member = tarfile.TarInfo("data/train/ants/link.png")
    member.type, member.linkname = tarfile.SYMTYPE, "../../../../outside.png"
    return member


@pytest.mark.parametrize("case", ["zip ..", "zip symlink", "tar absolute", "tar symlink"])
def test_unsafe_archive_member_raises_and_writes_nothing(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    if case == "zip ..":
        archive = work / "evil.zip"
        with zipfile.ZipFile(archive, "w") as opened:
            opened.writestr("data/train/ants/ok.png", b"ok")
            opened.writestr("../evil.png", b"evil")
        member = "../evil.png"
    elif case == "zip symlink":
        archive = work / "evil.zip"
        link = zipfile.ZipInfo("data/train/ants/link.png")
        link.external_attr = 0o120777 << 16  # what `zip -y` writes for a symbolic link
        with zipfile.ZipFile(archive, "w") as opened:
            opened.writestr(link, "../../../../outside.png")
        member = "data/train/ants/link.png"
    elif case == "tar absolute":
        member = str(tmp_path / "evil.png")
        archive = unsafe_tar(work / "evil.tar", tarfile.TarInfo(member), b"evil")
    else:
        archive = unsafe_tar(work / "evil.tar", symlink_member())
        member = "data/train/ants/link.png"
    target = work / "out" / "evil"
    with pytest.raises(KbenchError, match="unsafe member") as raised:
        extract_archive(archive, target)
    assert str(archive) in str(raised.value) and member in str(raised.value)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "outside.png").exists()
    assert list((work / "out").iterdir()) == []  # no target, no leftover partial folder
    with pytest.raises(KbenchError, match="unsafe member"):
        read_image_files(archive, extract_dir=target)
