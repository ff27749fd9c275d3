"""`kbench data check`: every problem in one pass, grouped by kind, full decodes, the layout, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from test_sources import image, truncated  # the same small fixtures: a valid image, a truncated JPEG

from kbench.cli import main
from kbench.data import sources
from kbench.data.sources import read_image_files


def split_tree(root: Path, splits=("train", "test"), classes=("ants", "bees"), per_class=2) -> Path:
    for split in splits:
        for name in classes:
            for i in range(per_class):
                image(root / split / name / f"{split}-{name}-{i}.png")
    return root


def roboflow(root: Path, rows: dict[str, list[str]], header: str = "filename,ants,bees") -> Path:
    """A Roboflow CSV export; every file a row names exists as a valid image (tests break some afterwards)."""
    for split, lines in rows.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / "_classes.csv").write_text("\n".join([header, *lines]) + "\n")
        for line in lines:
            if line.split(",")[0]:
                image(root / split / line.split(",")[0])
    return root


def check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def groups(out: str) -> dict[str, list[str]]:
    """{kind: [its listed lines]} parsed from the grouped problem list."""
    found: dict[str, list[str]] = {}
    kind = None
    for line in out.splitlines():
        heading = re.fullmatch(r"(\S.*) \((\d+)\):", line)
        if heading:
            kind = heading.group(1)
            found[kind] = []
        elif kind is not None and line.startswith("  "):
            found[kind].append(line.strip())
        else:
            kind = None
    return found


def test_truncated_jpeg_passes_verify_but_is_reported_and_left_out(tmp_path, capsys):
    split_tree(tmp_path)
    cut = truncated(tmp_path / "train" / "bees" / "cut.jpg")
    with Image.open(cut) as opened:
        opened.verify()  # the old header-only check passes it
    with Image.open(cut) as opened, pytest.raises(OSError):
        opened.load()

    code, out, err = check(capsys, str(tmp_path))
    assert code == 1
    assert "1 problem(s) in 1 kind(s):" in out
    assert groups(out) == {sources.UNREADABLE_PROBLEM: [groups(out)[sources.UNREADABLE_PROBLEM][0]]}
    assert str(cut) in out and "truncated" in out
    assert "cannot be used as is" in err and "--skip-bad" in err
    assert check(capsys, str(tmp_path), "--skip-bad")[0] == 1  # still accepted; changes nothing

    data = read_image_files(tmp_path, skip_bad=True)
    assert "cut.jpg" not in data.train.names and len(data.train) == 4


def test_every_problem_is_listed_in_one_pass_grouped_with_counts(tmp_path, capsys):
    roboflow(tmp_path, {
        "train": [
            "a1.jpg,1,0", "b1.jpg,0,1",
            "none.jpg,0,0",      # row 4: no class
            "two.jpg,1,1",       # row 5: several classes
            "odd.jpg,2,0",       # row 6: value not 0/1
            ",1,0",              # row 7: empty filename
            "gone.jpg,1,0",      # row 8: missing file
            "cut1.jpg,1,0",      # row 9: truncated
            "cut2.jpg,0,1",      # row 10: truncated
            "dup.jpg,1,0", "dup.jpg,0,1",  # rows 11 and 12: different classes
        ],
        "test": ["a2.jpg,1,0", "b2.jpg,0,1"],
    })
    (tmp_path / "train" / "gone.jpg").unlink()
    truncated(tmp_path / "train" / "cut1.jpg")
    truncated(tmp_path / "train" / "cut2.jpg")

    code, out, err = check(capsys, str(tmp_path))
    assert code == 1
    assert "8 problem(s) in 7 kind(s):" in out
    found = groups(out)
    assert {kind: len(lines) for kind, lines in found.items()} == {
        sources.NO_CLASS_PROBLEM: 1, sources.SEVERAL_CLASSES_PROBLEM: 1, sources.BAD_VALUE_PROBLEM: 1,
        sources.EMPTY_FILENAME_PROBLEM: 1, sources.MISSING_PROBLEM: 1, sources.UNREADABLE_PROBLEM: 2,
        sources.CONFLICTING_ROWS_PROBLEM: 1,
    }
    assert f"{sources.UNREADABLE_PROBLEM} (2):" in out
    assert all("_classes.csv row" in line for lines in found.values() for line in lines)
    assert "row 4: none.jpg" in found[sources.NO_CLASS_PROBLEM][0]
    assert "row 8: gone.jpg" in found[sources.MISSING_PROBLEM][0]
    assert [line.split(": ")[1] for line in found[sources.UNREADABLE_PROBLEM]] == ["cut1.jpg", "cut2.jpg"]
    # The usable files are still counted, and the summary says what to do.
    assert f"layout: {sources.ROBOFLOW_LAYOUT}" in out and "problems left out" in out
    assert "cannot be used as is" in err and "--skip-bad" in err


def test_duplicate_csv_row_with_other_classes_names_both_rows(tmp_path, capsys):
    roboflow(tmp_path, {
        "train": ["a1.jpg,1,0", "x.jpg,1,0", "b1.jpg,0,1", "c.jpg,1,0", "d.jpg,0,1", "x.jpg,0,1"],
        "test": ["a2.jpg,1,0", "b2.jpg,0,1"],
    })
    code, out, _ = check(capsys, str(tmp_path))
    (line,) = groups(out)[sources.CONFLICTING_ROWS_PROBLEM]
    assert code == 1 and "_classes.csv rows 3 and 7: x.jpg is listed twice" in line


@pytest.mark.parametrize("layout", [sources.ROBOFLOW_LAYOUT, sources.SPLIT_TREE_LAYOUT, sources.CLASS_TREE_LAYOUT])
def test_clean_data_set_exits_0_and_prints_its_layout(tmp_path, capsys, layout):
    root = tmp_path / "pets"
    if layout == sources.ROBOFLOW_LAYOUT:
        roboflow(root, {"train": ["a1.jpg,1,0", "b1.jpg,0,1"], "test": ["a2.jpg,1,0", "b2.jpg,0,1"]})
    elif layout == sources.SPLIT_TREE_LAYOUT:
        split_tree(root)
    else:
        split_tree(root / "unused", splits=("x",), per_class=4)
        root = root / "unused" / "x"  # x/ants/..., x/bees/...: class folders, no split folders
    code, out, err = check(capsys, str(root))
    assert code == 0 and "cannot be used" not in err
    assert f"layout: {layout}" in out and str(root) in out
    assert "2 classes, images per split:" in out and "ants" in out and "bees" in out
    assert "problem" not in out


def test_layout_error_is_one_error_line(tmp_path, capsys):
    split_tree(tmp_path, splits=("test",))
    truncated(tmp_path / "test" / "ants" / "cut.jpg")
    code, out, err = check(capsys, str(tmp_path))
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith("kbench: error:") and "no train/ folder" in err


def test_problems_that_empty_a_split_are_still_listed(tmp_path, capsys):
    split_tree(tmp_path, per_class=1)
    for name in ("ants", "bees"):
        (tmp_path / "test" / name / f"test-{name}-0.png").unlink()
        truncated(tmp_path / "test" / name / f"cut-{name}.jpg")
    code, out, err = check(capsys, str(tmp_path))
    assert code == 1 and len(groups(out)[sources.UNREADABLE_PROBLEM]) == 2
    assert "test split has no usable images after skipping 2 bad file(s)" in err


def test_skipped_rows_get_a_kind_column(tmp_path):
    """skipped.csv is written with pandas from the SkippedFile dataclasses (as a list of them or of their vars)."""
    import pandas as pd

    split_tree(tmp_path)
    truncated(tmp_path / "train" / "ants" / "cut.jpg")
    skipped = read_image_files(tmp_path, skip_bad=True).skipped
    for table in (pd.DataFrame(skipped), pd.DataFrame([vars(item) for item in skipped])):
        table.to_csv(tmp_path / "skipped.csv", index=False)
        header, row = (tmp_path / "skipped.csv").read_text().splitlines()
        assert header == "path,reason,kind" and row.endswith(sources.UNREADABLE_PROBLEM) and "cut.jpg" in row


def test_conversions_the_images_need_are_counted(tmp_path, capsys):
    """Photos with EXIF orientation, a 16-bit scan, transparency, palette, CMYK and grey images: each kind counted."""
    split_tree(tmp_path)
    train = tmp_path / "train" / "ants"
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: a phone held upright
    for i in range(2):
        Image.new("RGB", (8, 6), (200, 0, 0)).save(train / f"phone{i}.jpg", exif=exif)
    Image.new("I;16", (8, 8), 60000).save(train / "scan.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(train / "cutout.png")
    Image.new("P", (8, 8), 3).save(train / "palette.gif")
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(tmp_path / "test" / "bees" / "print.tif")
    Image.new("L", (8, 8), 90).save(tmp_path / "test" / "bees" / "grey.png")
    code, out, _ = check(capsys, str(tmp_path))
    assert code == 0
    assert ("images converted on decoding (as a photo viewer shows them): EXIF-rotated: 2, 16-bit scaled: 1, "
            "alpha composited: 1, palette: 1, CMYK: 1, greyscale: 2") in out
    clean = tmp_path / "clean"
    split_tree(clean)
    assert "converted" not in check(capsys, str(clean))[1]
