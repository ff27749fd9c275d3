"""`kbench report`'s answers to the study's question: grid effects, backends side by side, time to accuracy.

The trials are written directly as a finished run leaves them (metrics.json,
history.csv): S1's grid with two seeds on two backends, its accuracies the
study's published ones plus a known seed and backend offset, so every mean,
std and verdict below is known in advance. No training.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kbench.atomic import write_text_atomic
from kbench.cli import main
from kbench.config import Overrides, resolve_trials
from kbench.experiments import load_experiment
from kbench.reports.html_report import collect_report, render_html, render_markdown
from kbench.results.run_folder import RunFolder
from kbench.results.store import RunStore, trial_identity
from test_report import ARTIFACTS, browser, save_full_page_screenshot  # noqa: F401 (a fixture)

SEEDS = Overrides(grids=["seed=0,1"])
NOISE = 0.01  # seed 0 scores published - NOISE, seed 1 published + NOISE
TORCH_OFFSET = 0.002  # torch scores this much above jax: within seed noise
EPOCH_SECONDS = {"jax": [5.0, 1.0, 1.0], "torch": [8.0, 2.0, 2.0]}  # the first epoch compiles: 4 s and 6 s
FRACTIONS = [0.5, 0.8, 1.0]  # of the final accuracy, per epoch
BEST = 0.70  # S1's best point, relu / 128 / adam


def published(experiment, config) -> float:
    return next(p.metrics["test_accuracy"] for p in experiment.published
                if all(config.get(key) == value for key, value in p.params.items()))


def accuracy(experiment, config, backend: str) -> float:
    return published(experiment, config) + (NOISE if config.get("seed") else -NOISE) + (TORCH_OFFSET if backend == "torch" else 0)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """logs/cifar_grid with S1's 12 points x 2 seeds finished on jax and torch."""
    logs = tmp_path_factory.mktemp("sections") / "logs"
    experiment = load_experiment("cifar_grid")
    plan = resolve_trials(experiment, SEEDS)
    for backend in ("jax", "torch"):
        store = RunStore(logs, "cifar_grid", backend)
        for config in plan.trials:
            identity = trial_identity(config, "c" * 64)
            folder = store.folder(config, identity)
            folder.start(identity, config.to_dict(), {})
            final = accuracy(experiment, config, backend)
            if published(experiment, config) == BEST:  # only the best point's histories: a figure each is slow
                history = pd.DataFrame({"epoch": range(3), "accuracy": final, "loss": 1.0, "val_loss": 1.0,
                                        "val_accuracy": [final * f for f in FRACTIONS],
                                        "train_time_s": EPOCH_SECONDS[backend]})
                write_text_atomic(folder.history_file, history.to_csv(index=False))
            folder.finish({
                "status": "finished", "test_accuracy": final, "test_loss": 1.0, "best_val_accuracy": final,
                "best_epoch": 3, "epochs_run": 3, "train_time_s": sum(EPOCH_SECONDS[backend]), "params": 122_570,
                "train_images_per_s": 1000.0 if backend == "jax" else 500.0, "compile_time_s": EPOCH_SECONDS[backend][0] - 1,
                "peak_host_memory_mb": 900.0, "peak_accelerator_memory_mb": None,
                "accelerator_memory_note": "n/a: CPU",
            }, config.to_dict(), "c" * 64)
    return logs


@pytest.fixture(scope="module")
def report(logs):
    return collect_report(load_experiment("cifar_grid"), SEEDS, logs, target_accuracy=0.6)


def test_grid_effects_per_axis_with_the_studys_figures(report):
    effects = report.effects
    assert effects.metric == "best_val_accuracy" and effects.trials == 48
    assert [effect.axis for effect in effects.axes] == ["activation", "batch_size", "optimizer", "backend"]
    batch = effects.axes[1].table.set_index("value")
    assert batch.index.tolist() == ["32", "64", "128"] and batch["n"].tolist() == [16, 16, 16]
    study = {32: (0.67, 0.68, 0.11, 0.60), 64: (0.63, 0.68, 0.10, 0.57), 128: (0.52, 0.70, 0.10, 0.54)}
    for value, figures in study.items():
        assert batch.loc[str(value), "published_test_accuracy"] == pytest.approx(np.mean(figures))
        assert batch.loc[str(value), "mean"] == pytest.approx(np.mean(figures) + TORCH_OFFSET / 2)
        assert batch.loc[str(value), "test_accuracy"] == pytest.approx(batch.loc[str(value), "mean"])
    backend = effects.axes[3].table.set_index("value")
    assert backend.loc["torch", "mean"] - backend.loc["jax", "mean"] == pytest.approx(TORCH_OFFSET)


def test_each_axis_effect_against_the_seed_spread(report):
    effects = report.effects
    assert effects.seeds == 2 and effects.seed_std == pytest.approx(NOISE * np.sqrt(2))
    lines = effects.effect_lines
    assert lines[0].startswith("optimizer: ") or lines[0].startswith("activation: ")  # the largest effects first
    assert lines[-1].startswith("backend: 0.4") and "range (0.00), seed std 0.014 (0.14x)" in lines[-1]
    (activation,) = [line for line in lines if line.startswith("activation")]
    assert re.fullmatch(r"activation: 0\.\d\d–0\.\d\d range \(0\.\d\d\), seed std 0\.014 \(\d\dx\)", activation)


def test_heatmaps_of_every_pair_the_largest_effects_first(report):
    heatmaps = report.effects.heatmaps
    assert len(heatmaps) == 6
    assert {heatmaps[0].rows, heatmaps[0].columns} == {"activation", "optimizer"}
    first = heatmaps[0].table
    sigmoid_sgd = first.loc["sigmoid", "sgd"] if heatmaps[0].rows == "activation" else first.loc["sgd", "sigmoid"]
    assert sigmoid_sgd == pytest.approx(np.mean([0.11, 0.10, 0.10]) + TORCH_OFFSET / 2)


def test_backends_side_by_side_with_the_anova_verdict(report):
    comparison = report.comparison
    assert comparison.metrics == ["test_accuracy", "train_images_per_s", "compile_time_s", "peak_host_memory_mb"]
    assert len(comparison.table) == 24 and (comparison.table["seeds"] == 2).all()
    jax = comparison.table[comparison.table["backend"] == "jax"]
    assert jax["test_accuracy_std"].to_numpy() == pytest.approx(NOISE * np.sqrt(2))
    assert (jax["compile_time_s"] == 4).all()
    assert len(comparison.verdicts) == 12
    assert all(v.startswith("no significant difference (one-way ANOVA p=") for v in comparison.verdicts.values())
    assert "activation=relu, batch_size=128, optimizer=adam" in comparison.verdicts
    assert comparison.verdict_summary.startswith("Test accuracy differs between backends beyond seed noise at 0 of 12")
    assert comparison.table["backend"].tolist()[:4] == ["jax", "torch", "jax", "torch"]  # side by side


def test_time_to_accuracy_of_the_best_point_compile_apart(report):
    over_time = report.over_time
    assert over_time.point == "activation=relu, batch_size=128, optimizer=adam" and len(over_time.curves) == 4
    jax = next(curve for curve in over_time.curves if curve.backend == "jax")
    assert jax.compile_s == 4 and jax.seconds.tolist() == [1.0, 2.0, 3.0] and jax.measured_on == "val_accuracy"
    table = over_time.table.set_index("backend")
    assert table.loc["jax", "target_reached_seeds"] == "2/2" and table.loc["torch", "time_to_target_s_mean"] == 12
    assert table.loc["jax", "time_to_target_excl_compile_s_mean"] == 3


def test_the_page_and_the_markdown_show_the_sections(report, logs):
    page = render_html(report)
    for section in ("grid-effects", "backends", "time-to-accuracy"):
        assert f'id="{section}"' in page
    assert page.count('class="heatmap') == 6 and page.count(" hidden>") >= 5
    assert "one-way ANOVA" in page and "Dashed: the target 0.6" in page
    pictures = [report.effects.parallel, *report.comparison.pictures, report.over_time.picture]
    for picture in pictures:
        assert picture.data_uri in page
        Image.open(io.BytesIO(picture.png)).verify()
    markdown = render_markdown(report, report.run_dir)
    for heading in ("## Grid effects", "## Backends", "## Time to accuracy"):
        assert heading in markdown
    assert "- batch_size: " in markdown and "published_test_accuracy" in markdown
    assert re.search(r"\|\s+32 \| 0\.5160 ± 0\.2438\s+\|\s+16 \|", markdown)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert all((report.run_dir / link).is_file() for link in links) and len(links) >= 3


def test_one_seed_and_one_backend(report, logs, tmp_path):
    """Without seeds the effect lines say so; with one backend there is no comparison."""
    from kbench.reports.grid_effects import grid_effects

    one_seed = grid_effects(report.table[report.table["seed"] == 1], ["activation", "batch_size", "optimizer"],
                            RunFolder(tmp_path, "run"))
    assert one_seed.seeds == 1 and one_seed.seed_std is None and one_seed.trials == 24
    assert all(line.endswith("seed std n/a: one seed") for line in one_seed.effect_lines)
    single = tmp_path / "logs"
    import shutil

    shutil.copytree(logs / "cifar_grid" / "jax", single / "cifar_grid" / "jax")
    alone = collect_report(load_experiment("cifar_grid"), SEEDS, single)
    assert alone.comparison is None and [e.axis for e in alone.effects.axes] == ["activation", "batch_size", "optimizer"]
    assert alone.over_time.target is None and alone.over_time.table.empty
    assert "to compare backends here" in render_html(alone)


def test_report_takes_a_target_accuracy(logs, capsys, monkeypatch):
    """The flag reaches the report (whose use of it the tests above check), and a percentage is refused."""
    import kbench.reports.html_report

    calls = []
    monkeypatch.setattr(kbench.reports.html_report, "write_report", lambda *args: calls.append(args) or (Path("h"), Path("m")))
    assert main(["report", "cifar_grid", "--logs-dir", str(logs), "--target-accuracy", "0.6"]) == 0
    assert calls[0][1:] == (Overrides(), logs, 0.6)
    assert main(["report", "cifar_grid", "--logs-dir", str(logs), "--target-accuracy", "60"]) == 2
    assert "--target-accuracy 60.0: give a fraction in (0, 1]" in capsys.readouterr().err


def test_the_sections_render_in_chromium(browser, report, tmp_path):  # noqa: F811 (the fixture)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    browser.get(page.as_uri())
    browser.execute_async_script("const done = arguments[arguments.length - 1];"  # every image decoded: full height
                                 "Promise.all([...document.images].map((i) => i.decode())).then(() => done(true), done)")
    save_full_page_screenshot(browser, ARTIFACTS / "report-sections.png")
    # Each section's content: the elements between its heading and the next one, their text and loaded images.
    contents = browser.execute_script("""
        return arguments[0].map((id) => {
          let text = "", images = 0, node = document.getElementById(id).nextElementSibling;
          for (; node && node.tagName !== "H2"; node = node.nextElementSibling) {
            text += node.innerText;
            images += [...node.querySelectorAll("img")].filter((i) => i.complete && i.naturalWidth > 0).length;
          }
          return [text.length, images];
        });""", ["grid-effects", "backends", "time-to-accuracy"])
    assert all(length > 100 and images >= 1 for length, images in contents), contents

    def shown() -> list[str]:
        return [m.get_attribute("data-pair") for m in browser.find_elements(By.CLASS_NAME, "heatmap") if m.is_displayed()]

    pairs = Select(browser.find_element(By.ID, "heatmap-pair"))
    assert shown() == [report.effects.heatmaps[0].slug]
    pairs.select_by_index(5)
    assert shown() == [report.effects.heatmaps[5].slug]
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
