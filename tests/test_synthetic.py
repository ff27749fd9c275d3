"""The offline generators: switch symbols in Roboflow CSV layout (S5) and speed-limit signs (S4)."""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kbench.data import synthetic
from kbench.data.synthetic import (
    GENERATOR_VERSION,
    SignOptions,
    SymbolOptions,
    generated_dataset_dir,
    make_speed_signs,
    make_symbols,
    speed_signs_dir,
    symbols_dir,
)
from kbench.data.synthetic import symbols as symbols_module
from kbench.errors import KbenchError

SMALL = SymbolOptions(per_class=6, real_per_class=2, image_size=64, seed=3)
SMALL_SIGNS = SignOptions(train_per_class=3, val_per_class=2, min_size=48, max_size=80, seed=3)
HEADER = "filename, 1-polig, dimmer, dubbeltrapp, kron, trapp"


@pytest.fixture(scope="module")
def symbols(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("symbols") / "data"
    return out, make_symbols(out, SMALL)


def read_rows(split_dir: Path) -> list[list[str]]:
    with (split_dir / "_classes.csv").open(newline="") as handle:
        return list(csv.reader(handle))[1:]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_symbols_are_written_in_roboflow_csv_layout(symbols):
    out, summary = symbols
    assert sorted(p.name for p in out.iterdir()) == ["README.roboflow.txt", "test", "train", "valid"]
    assert "seed: 3" in (out / "README.roboflow.txt").read_text()
    classes = HEADER.split(", ")[1:]
    for split in ("train", "valid", "test"):
        folder = out / split
        assert (folder / "_classes.csv").read_text().splitlines()[0] == HEADER
        rows = read_rows(folder)
        names = [row[0] for row in rows]
        assert sorted(names) == sorted(p.name for p in folder.iterdir() if p.name != "_classes.csv")
        for name, *flags in rows:
            assert sorted(flags) == ["0"] * 4 + ["1"]
            # syn_<class>_00001.png / BEL_<class>_1.jpg: the one-hot column names the file's class.
            assert name.split("_")[1] == classes[flags.index("1")]
            with Image.open(folder / name) as image:
                assert image.size == (64, 64) and image.mode == "RGB"
        assert len(rows) == sum(summary["images"][split].values())


def test_symbol_counts_follow_the_options(symbols):
    _, summary = symbols
    for split, expected in (("train", 4), ("valid", 1), ("test", 1)):
        assert set(summary["synthetic"][split].values()) == {expected}
    real = {split: sum(counts.values()) for split, counts in summary["real"].items()}
    assert summary["real_total"] == 10 and summary["total"] == 40
    # Real-looking images serve the synthetic-to-real test: most go to test/, hardly any to train/.
    assert real["test"] >= 7 and real["train"] <= 1


def test_real_looking_images_differ_from_clean_synthetic_ones(symbols):
    out, _ = symbols
    for path in out.glob("*/syn_*.png"):
        values = pixels(path)
        assert set(np.unique(values)) <= {0, 255}
        assert (values == 255).all(axis=-1).mean() > 0.5
    for path in out.glob("*/BEL_*.jpg"):
        values = pixels(path)
        assert (values == 255).all(axis=-1).mean() < 0.05  # paper tone, never pure white
        assert len(np.unique(values)) > 30
        assert values.mean() > 150  # still a light sheet with dark strokes


def test_unbalanced_real_counts(tmp_path):
    summary = make_symbols(tmp_path / "out", SymbolOptions(per_class=0, real_counts=(3, 0, 1, 2, 0), image_size=48))
    real = {name: sum(summary["real"][split][name] for split in summary["real"]) for name in summary["classes"]}
    assert real == {"1-polig": 3, "dimmer": 0, "dubbeltrapp": 1, "kron": 2, "trapp": 0}
    assert len(list((tmp_path / "out").glob("*/BEL_*.jpg"))) == 6


def test_symbols_are_deterministic(symbols, tmp_path):
    out, _ = symbols
    again = tmp_path / "again"
    make_symbols(again, SMALL)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)

    other = tmp_path / "other"
    make_symbols(other, SymbolOptions(per_class=6, real_per_class=2, image_size=64, seed=4))
    png = "train/syn_dimmer_00000.png"
    assert (out / png).read_bytes() != (other / png).read_bytes()


def test_refuses_a_non_empty_output_but_fills_an_empty_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(KbenchError, match=re.escape(str(out))):
        make_symbols(out, SMALL)
    with pytest.raises(KbenchError, match=re.escape(str(out))):
        make_speed_signs(out, SMALL_SIGNS)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    make_symbols(empty, SymbolOptions(per_class=1, real_per_class=0, image_size=32))
    assert (empty / "train" / "_classes.csv").exists()


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("pen broke")

    monkeypatch.setattr(symbols_module, "draw_ink", broken)
    with pytest.raises(RuntimeError, match="pen broke"):
        make_symbols(tmp_path / "out", SMALL)
    assert list(tmp_path.iterdir()) == []


def test_speed_signs_are_a_folder_per_class_tree(tmp_path):
    out = tmp_path / "signs"
    summary = make_speed_signs(out, SMALL_SIGNS)
    classes = ["speed_20", "speed_30", "speed_50", "speed_60", "speed_70", "speed_80"]
    assert summary["classes"] == classes
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (out / split).iterdir()) == classes
        for name in classes:
            files = sorted((out / split / name).glob("*.jpg"))
            assert len(files) == count == summary["images"][split][name]
            for path in files:
                with Image.open(path) as image:
                    assert image.mode == "RGB" and all(48 <= side <= 80 for side in image.size)

    again = tmp_path / "again"
    make_speed_signs(again, SMALL_SIGNS)
    first = "val/speed_50/speed_50_0003.jpg"
    assert (out / first).read_bytes() == (again / first).read_bytes()


def test_generated_folders_are_made_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path))
    calls = []

    def small_symbols(out: Path) -> dict:
        calls.append(out)
        return make_symbols(out, SymbolOptions(per_class=1, real_per_class=1, image_size=32))

    monkeypatch.setattr(synthetic, "make_symbols", small_symbols)
    monkeypatch.setattr(synthetic, "make_speed_signs", functools.partial(make_speed_signs, options=SMALL_SIGNS))
    expected = tmp_path / "generated" / f"symbols-v{GENERATOR_VERSION}"
    assert symbols_dir() == expected and symbols_dir() == expected
    assert calls == [expected]
    assert (expected / "test" / "_classes.csv").exists()
    assert (speed_signs_dir() / "val" / "speed_80").is_dir()


def test_generated_dataset_dir_accepts_a_folder_finished_by_another_process(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path))

    def raced(out: Path) -> dict:
        # The other process renames its folder into place first, so ours is refused.
        out.mkdir(parents=True)
        (out / "train").mkdir()
        raise KbenchError(f"{out} exists and is not empty")

    assert generated_dataset_dir("raced", raced) == tmp_path / "generated" / f"raced-v{GENERATOR_VERSION}"
