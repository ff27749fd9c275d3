"""`kbench report`: one self-contained HTML page and a Markdown twin, checked in a real browser."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from kbench.cli import main
from kbench.config import Overrides, resolve_trials
from kbench.experiments import load_experiment
from kbench.reports.html_report import collect_report, render_html, render_markdown

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Debian's packages `chromium` and `chromium-driver`; the driver is named explicitly so that
# Selenium Manager never tries to download one (the tests run offline).
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DATA_URI = "data:image/png;base64,"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """logs/quickstart-quick after `kbench run quickstart --quick` and `kbench report quickstart --quick`."""
    logs = tmp_path_factory.mktemp("report") / "logs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", "quickstart", "--quick", "--logs-dir", str(logs), "--quiet"]) == 0
        assert main(["report", "quickstart", "--quick", "--logs-dir", str(logs)]) == 0
    return logs / "quickstart-quick"


def best_trial_dir(run_dir: Path) -> Path:
    """The best trial of the run, as the run's record names it."""
    backend_dir = next(path for path in run_dir.iterdir() if path.is_dir())
    record = json.loads(next((backend_dir / "runs").glob("*.json")).read_text())
    return backend_dir / record["best_trial"]


def mistakes(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(best_trial_dir(run_dir) / "evaluation" / "misclassified.csv", dtype={"true": str, "predicted": str})


def test_the_page_is_one_self_contained_file(run_dir):
    page = (run_dir / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert sources and all(source.startswith(DATA_URI) for source in sources)
    for source in sources:
        Image.open(io.BytesIO(base64.b64decode(source[len(DATA_URI):]))).verify()
    assert not re.search(r'<(script|link)[^>]+(src|href)=', page), "no external scripts or styles"
    assert page.count('class="thumb"') == len(mistakes(run_dir))
    assert 'id="T_results"' in page and "test_accuracy" in page


def test_markdown_links_images_that_exist(run_dir):
    markdown = (run_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert any(link.endswith("confusion_matrix.png") for link in links)
    assert sum(link.endswith("training_curves.png") for link in links) == 4
    assert all((run_dir / link).is_file() for link in links)
    assert "| model" in markdown and "test_accuracy" in markdown


def test_several_backends_are_compared(tmp_path, run_dir):
    """A copy of one backend's results under another backend's name gives the page a comparison."""
    logs = tmp_path / "logs"
    shutil.copytree(run_dir, logs / run_dir.name)
    ran = next(path.name for path in (logs / run_dir.name).iterdir() if path.is_dir())
    other = next(name for name in ("jax", "torch", "tensorflow") if name != ran)
    shutil.copytree(logs / run_dir.name / ran, logs / run_dir.name / other)

    report = collect_report(load_experiment("quickstart"), Overrides(quick=True), logs)
    assert report.comparison is not None and len(report.comparison.table) == 8  # 4 grid points x 2 backends
    assert set(report.comparison.table["backend"]) == {ran, other}
    # One seed per point: no ANOVA, and the page says why.
    assert report.comparison.verdict_summary == "Test accuracy between backends: n/a: needs 2+ backends with 2+ seeds."
    assert [best.backend for best in report.best_trials] == sorted([ran, other])
    assert 'id="best-' + other + '"' in render_html(report)


def test_published_figures_stand_beside_ours(logs_dir):
    (logs_dir / "cifar_grid" / "jax").mkdir(parents=True)  # nothing run yet: every trial pending
    experiment = load_experiment("cifar_grid")
    report = collect_report(experiment, Overrides(), logs_dir)
    page = render_html(report)
    assert "published_test_accuracy" in report.table and "pending" in page
    assert re.search(r'<th [^>]*class="col_heading level0 col\d+"[^>]*><span class="group">published</span></th>', page)
    assert experiment.published_source and experiment.published_source in page
    assert report.title == "cifar_grid on cifar10 (jax)"
    assert not re.search(r">\s*(None|nan|NaN|<NA>)\s*<", page) and "n/a" in page  # pending rows have no numbers


# ----------------------------------------------------------------------------- S5 on its own and on other data

SYMBOL_CLASSES = ("1-polig", "dimmer", "dubbeltrapp", "kron", "trapp")
OWN_CLASSES = ("stop", "yield", "speed_30", "speed_50", "no_entry", "one_way")


def finished_trials(logs: Path, overrides: Overrides, classes, unfinished: int = 0) -> None:
    """S5's trials as a finished run leaves them (metrics.json), written directly: no training. The last
    `unfinished` trials are left pending, so their numbers are missing."""
    from kbench.results.store import RunStore, trial_identity

    experiment = load_experiment("symbols")
    plan = resolve_trials(experiment, overrides)
    store = RunStore(logs, "symbols", "jax")
    for number, config in enumerate(plan.trials[: len(plan.trials) - unfinished]):
        folder = store.folder(config, trial_identity(config, "d" * 64))
        folder.start(trial_identity(config, "d" * 64), config.to_dict(), {})
        accuracy = 0.8 + 0.05 * number
        folder.finish({
            "status": "finished", "test_accuracy": accuracy, "test_loss": 0.5, "best_val_accuracy": accuracy,
            "best_epoch": 3, "epochs_run": 4, "train_time_s": 61.5, "train_images_per_s": 812.0, "params": 11_000_000,
            "group_accuracy_real": accuracy - 0.1, "group_accuracy_synthetic": accuracy + 0.01,
            **{f"class_accuracy_{name}": accuracy - 0.01 * i for i, name in enumerate(classes)},
            "train_energy_per_image_j": None,  # no energy counter readable: missing, shown as n/a
        }, config.to_dict(), "d" * 64)


@pytest.fixture(scope="module")
def symbols_logs(tmp_path_factory) -> tuple[Path, Path]:
    """logs/ holding S5 run on its own data set (one trial still pending) and on a user's export."""
    root = tmp_path_factory.mktemp("symbols")
    export = root / "my_signs.zip"
    export.write_bytes(b"")  # only its path counts here: nothing is loaded
    logs = root / "logs"
    finished_trials(logs, Overrides(), SYMBOL_CLASSES, unfinished=1)
    finished_trials(logs, Overrides(sets=[f"dataset={export}"]), OWN_CLASSES)
    return logs, export


def test_published_figures_only_for_the_studys_own_data_set(symbols_logs):
    logs, export = symbols_logs
    experiment = load_experiment("symbols")
    own = collect_report(experiment, Overrides(), logs)
    assert own.title == "symbols on symbols (jax)" and not own.published_note
    assert {f"published_class_accuracy_{name}" for name in SYMBOL_CLASSES} <= set(own.table.columns)

    other = collect_report(experiment, Overrides(sets=[f"dataset={export}"]), logs)
    assert other.title == "symbols on my_signs.zip (jax)" and other.datasets == [str(export)]
    assert not [column for column in other.table if column.startswith("published_")]
    assert {f"class_accuracy_{name}" for name in OWN_CLASSES} <= set(other.table.columns)
    page, markdown = html.unescape(render_html(other)), render_markdown(other, logs / "symbols")
    assert other.published_note.startswith("No published figures") and "my_signs.zip" in other.published_note
    for text in (page, markdown):
        assert other.published_note in text and "published" not in text.replace(other.published_note, "").lower()
    assert "<title>symbols on my_signs.zip (jax)</title>" in page and markdown.startswith("# symbols on my_signs.zip (jax)")


def test_missing_values_read_n_a(symbols_logs):
    logs, _ = symbols_logs
    report = collect_report(load_experiment("symbols"), Overrides(), logs)
    assert report.table["status"].tolist() == ["finished", "pending"]
    page, markdown = render_html(report), render_markdown(report, logs / "symbols")
    cells = re.findall(r"<td [^>]*>([^<]*)</td>", page)
    assert cells and not {"None", "nan", "NaN", "<NA>", "–", ""} & {cell.strip() for cell in cells}
    assert "n/a" in cells
    assert "| n/a" in markdown and not re.search(r"\|\s*(None|nan)\s*\|", markdown)


def test_the_report_reads_stored_files_only(run_dir, monkeypatch):
    """No data set and no model is loaded: thumbnails of every shown mistake come from the evaluation."""
    import keras

    import kbench.data

    def refuse(*args, **kwargs):
        raise AssertionError("the report must not load data or models")

    monkeypatch.setattr(kbench.data, "load_dataset", refuse)
    monkeypatch.setattr(keras.saving, "load_model", refuse)
    report = collect_report(load_experiment("quickstart"), Overrides(quick=True), run_dir.parent)
    (best,) = report.best_trials
    assert len(best.misclassified) == len(mistakes(run_dir)) > 0
    assert all(src.startswith(DATA_URI) for src in best.misclassified["src"])


def test_a_failed_evaluation_is_reported(tmp_path, run_dir):
    logs = tmp_path / "logs"
    shutil.copytree(run_dir, logs / run_dir.name)
    evaluation = best_trial_dir(logs / run_dir.name) / "evaluation"
    (evaluation / "summary.json").unlink()
    (evaluation / "error.txt").write_text("Traceback (most recent call last):\nMemoryError: out of memory\n")
    report = collect_report(load_experiment("quickstart"), Overrides(quick=True), logs)
    assert "Evaluation failed: MemoryError: out of memory" in render_html(report)
    assert report.table["status"].eq("finished").all()  # trained results are kept


def test_report_without_results_says_what_to_run(capsys, logs_dir):
    assert main(["report", "quickstart", "--quick", "--logs-dir", str(logs_dir)]) == 2
    assert "run `kbench run quickstart --quick` first" in capsys.readouterr().err


# ----------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium, collecting the page's console messages."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Chromium and its driver: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def save_full_page_screenshot(driver, path: Path) -> None:
    """The whole page, not only the window (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def column_values(table, column: int) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(row.find_elements(By.TAG_NAME, "td")[column].text) for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def test_the_page_renders_sorts_and_filters_in_chromium(browser, run_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser.get((run_dir / "report.html").as_uri())
    save_full_page_screenshot(browser, ARTIFACTS / "report.png")

    broken = browser.execute_script("return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert browser.execute_script("return document.images.length") > 10 and broken == 0

    table = browser.find_element(By.ID, "T_results")
    header_row = "thead tr:last-child th"  # below the row of column groups
    headers = [header.text.strip() for header in table.find_elements(By.CSS_SELECTOR, header_row)]
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 4
    column = headers.index("test_accuracy")
    table.find_elements(By.CSS_SELECTOR, header_row)[column].click()
    assert column_values(table, column) == sorted(column_values(table, column))
    table.find_elements(By.CSS_SELECTOR, header_row)[column].click()
    assert column_values(table, column) == sorted(column_values(table, column), reverse=True)

    board = browser.find_element(By.CSS_SELECTOR, "section.misclassified")
    by_true, by_predicted = (Select(board.find_element(By.CLASS_NAME, name)) for name in ("filter-true", "filter-predicted"))
    wrong = mistakes(run_dir)
    pairs = wrong.groupby(["true", "predicted"]).size()
    (true, predicted), expected = pairs.idxmax(), pairs.max()

    def shown() -> list:
        return [card for card in board.find_elements(By.CLASS_NAME, "thumb") if card.is_displayed()]

    by_true.select_by_value(true)
    assert {card.get_attribute("data-true") for card in shown()} == {true}
    assert len(shown()) == (wrong["true"] == true).sum()
    by_predicted.select_by_value(predicted)
    assert len(shown()) == expected
    assert board.find_element(By.CLASS_NAME, "shown-count").text == f"{expected} shown"
    by_true.select_by_value("")
    assert len(shown()) == (wrong["predicted"] == predicted).sum()
    by_predicted.select_by_value("")
    assert len(shown()) == len(wrong)

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


KEY_COLUMNS = ["model", "backend", "status", "test_accuracy"]  # S5's grid key, then what every row must show


def rects(browser, selector: str) -> list[dict]:
    """The viewport rectangles of the elements `selector` finds, and their text."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => {"
        "const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, text: e.textContent.trim(),"
        " shown: e.offsetParent !== null}; })", selector)


def test_a_wide_table_keeps_its_key_columns_in_view_at_1280_px(browser, symbols_logs, tmp_path):
    """S5 on its own data: 35-odd columns. Scrolled to the far right, settings, backend, status and test
    accuracy are still in the window; the per-class and per-group groups hide and show."""
    from selenium.webdriver.common.by import By

    logs, _ = symbols_logs
    page = tmp_path / "report.html"
    page.write_text(render_html(collect_report(load_experiment("symbols"), Overrides(), logs)))
    browser.set_window_size(1280, 800)
    try:
        browser.get(page.as_uri())
        assert browser.execute_script("return window.innerWidth") <= 1280
        assert browser.title == "symbols on symbols (jax)"
        headers = [cell["text"] for cell in rects(browser, "#T_results thead tr:last-child th")]
        assert headers[:4] == KEY_COLUMNS
        body = browser.find_element(By.ID, "T_results").find_element(By.TAG_NAME, "tbody").text
        assert not re.search(r"\b(None|nan|NaN)\b", body) and "n/a" in body

        box = browser.find_element(By.CSS_SELECTOR, ".results .scroll")
        browser.execute_script("arguments[0].scrollIntoView(); arguments[0].scrollLeft = arguments[0].scrollWidth", box)
        width, scrolled = browser.execute_script("return [arguments[0].scrollWidth - arguments[0].clientWidth,"
                                                 " arguments[0].scrollLeft]", box)
        assert width > 500 and scrolled == width, "the table is wider than the window and scrolled to its end"
        view = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.right]", box)
        (ARTIFACTS).mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "report-1280-scrolled.png"))
        right_edges = []
        for column in range(len(KEY_COLUMNS)):
            cells = rects(browser, f"#T_results .col{column}")
            assert len(cells) >= 3  # its headers and both rows
            assert all(view[0] - 1 <= cell["left"] and cell["right"] <= view[1] + 1 for cell in cells), (column, cells)
            right_edges.append(max(cell["right"] for cell in rects(browser, f"#T_results tbody .col{column}")))
        assert right_edges == sorted(right_edges), "the key columns stand side by side, not on top of each other"
        # The next column (test_loss) has scrolled away behind them.
        assert all(cell["right"] <= right_edges[-1] + 1 for cell in rects(browser, f"#T_results tbody .col{len(KEY_COLUMNS)}"))

        for group, names in (("per-class", SYMBOL_CLASSES), ("per-group", ("real", "synthetic"))):
            header = "#T_results thead tr:last-child th"
            shown = [cell["text"] for cell in rects(browser, header) if cell["shown"]]
            assert all(name in shown for name in names)
            toggle = browser.find_element(By.CSS_SELECTOR, f"label[for=show-{group}]")
            toggle.click()
            hidden = [cell["text"] for cell in rects(browser, header) if cell["shown"]]
            # Ours and the study's published figures of each class (group) hide together.
            assert len(hidden) == len(shown) - sum(shown.count(name) for name in names) and not set(names) & set(hidden)
            assert len([cell for cell in rects(browser, "#T_results td") if cell["shown"]]) == 2 * len(hidden)
            if group == "per-class":
                browser.save_screenshot(str(ARTIFACTS / "report-1280-without-classes.png"))
            toggle.click()
            assert [cell["text"] for cell in rects(browser, header) if cell["shown"]] == shown
    finally:
        browser.set_window_size(1280, 1000)


def test_the_gallery_shows_right_and_wrong_test_images_with_their_labels(run_dir):
    """S4's picture: the best trial's test images, predicted and true labels, right ones and wrong ones."""
    page = (run_dir / "report.html").read_text()
    gallery = page[page.index('<section id="section-gallery">'):]
    gallery = gallery[:gallery.index("</section>")]
    predictions = pd.read_csv(best_trial_dir(run_dir) / "evaluation" / "predictions.csv", dtype={"true": str, "predicted": str})
    cards = re.findall(r'alt="test image (\d+)">.*?<strong style="color: (\w+)">([^<]*)</strong>\s*<br>\(true ([^)]*)\)',
                       gallery, re.S)
    assert {color for _, color, _, _ in cards} == {"darkgreen", "firebrick"}  # both right and wrong
    for index, color, predicted, true in cards:
        row = predictions.iloc[int(index)]
        assert (predicted, true) == (row["predicted"], row["true"])
        assert (color == "darkgreen") == bool(row["correct"])
    assert "## Test images: predicted and true labels" in (run_dir / "report.md").read_text()
