"""`kbench report`: one self-contained HTML page, and a Markdown twin, of an experiment's results.

The page is a single file (figures and thumbnails as base64 data URIs, a few
lines of inline JavaScript to sort tables and filter the misclassified
images), so it can be mailed or archived on its own. Markdown viewers rarely
show data URIs, so the Markdown version links to PNG files instead: the
evaluation's own, and the figures made here, saved where they belong (a
trial's curves in its folder, the backend comparison beside the report; never
a new folder beside the backends' folders, which would read as a backend).

Sections: the results table (published figures beside ours), a per-backend
comparison when several backends ran, training curves per trial, and for each
backend's best trial its confusion matrix, per-class metrics and a
misclassification dashboard.
"""

from __future__ import annotations

import base64
import functools
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from PIL import Image

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials, trial_config
from kbench.data import load_dataset
from kbench.errors import KbenchError
from kbench.reports import plots
from kbench.reports.evaluation import EVALUATION_DIR, SUMMARY_FILE
from kbench.results.store import CONFIG_FILE, RunStore, backends_with_results, read_json, run_name
from kbench.results.table import results_table
from kbench.runner import BEST_TRIAL_FILE

plt = plots.plt  # pyplot with the file-only backend plots.py selects

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
CURVES_FILE = "training_curves.png"  # in each trial's folder
BACKENDS_FILE = "report_backends.png"  # beside the report
COMPARE_FILE = "comparison.png"  # `kbench compare`'s chart, shown when it ran
MAX_THUMBNAILS = 300  # the most confident mistakes; CIFAR-10's test set can have thousands
THUMBNAIL_SIZE = 64
COMPARED = ["test_accuracy", "train_images_per_s"]
MARKDOWN_MISTAKES = 20  # rows of the misclassified table in the Markdown version


# ----------------------------------------------------------------------------- pictures


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Picture:
    """A PNG of the report: embedded in the HTML page, linked by path from the Markdown one."""

    title: str
    png: bytes
    path: Path  # where the file lies, or will once saved
    saved: bool = True

    @classmethod
    def from_file(cls, path: Path, title: str) -> "Picture":
        return cls(title, path.read_bytes(), path)

    @classmethod
    def from_figure(cls, fig: plt.Figure, path: Path, title: str) -> "Picture":
        """A figure made for the report; written to `path` only by `save` (the Markdown version)."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        return cls(title, buffer.getvalue(), path, saved=False)

    def save(self) -> Path:
        if not self.saved:
            self.path.write_bytes(self.png)
            self.saved = True
        return self.path

    @property
    def data_uri(self) -> str:
        return png_data_uri(self.png)


def thumbnail_uri(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> str:
    """A uint8 HxWxC image as a small PNG data URI; small images are enlarged with visible pixels."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    scale = size / max(picture.size)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), resample)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return png_data_uri(buffer.getvalue())


# ----------------------------------------------------------------------------- figures


def curves_figure(history: pd.DataFrame, title: str) -> plt.Figure:
    """Loss and accuracy per epoch, training and validation, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.7))
    epochs = history["epoch"] + 1
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for column, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if column in history:
                ax.plot(epochs, history[column], marker="o", markersize=3, label=label)
        ax.set(title=metric, xlabel="epoch", xlim=(0.5, epochs.max() + 0.5))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def comparison_figure(comparison: pd.DataFrame) -> plt.Figure:
    """Bars per grid point, one colour per backend, for each compared metric."""
    fig, axes = plt.subplots(1, len(COMPARED), figsize=(5.5 * len(COMPARED), 3.8))
    for ax, metric in zip(axes, COMPARED):
        comparison[metric].plot.bar(ax=ax, rot=30)
        ax.set(title=metric, xlabel="")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- collecting


@dataclass
class BestTrial:
    """One backend's best trial: its evaluation tables and figures, and its mistakes."""

    backend: str
    trial: str
    summary: dict[str, Any]
    per_class: pd.DataFrame
    pictures: list[Picture]
    misclassified: pd.DataFrame  # index, true, predicted, confidence, src (thumbnail data URI or "")
    class_names: list[str]
    note: str = ""


@dataclass
class Report:
    """Everything the page shows, gathered from one experiment run's folder."""

    experiment: Experiment
    run_dir: Path
    table: pd.DataFrame
    backends: list[str]
    comparison: pd.DataFrame | None = None
    comparison_pictures: list[Picture] = field(default_factory=list)
    curves: list[Picture] = field(default_factory=list)
    best_trials: list[BestTrial] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"kbench report: {self.run_dir.name}"


def backend_comparison(table: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame | None:
    """Test accuracy and throughput per grid point (rows) and backend (columns); None for one backend."""
    finished = table[table["status"] == "finished"]
    if finished["backend"].nunique() < 2:
        return None
    keys = grid_keys or ["trial"]
    # Grid values as text: a None (e.g. learning_rate=None) would otherwise drop its rows from the pivot.
    labelled = finished.assign(trial="(one point)", **{key: finished[key].astype(str) for key in grid_keys})
    return labelled.pivot_table(index=keys, columns="backend", values=COMPARED, aggfunc="mean")


def trial_label(config: TrialConfig, grid_keys: list[str], backend: str) -> str:
    values = ", ".join(f"{key}={config.get(key)}" for key in grid_keys)
    return f"{backend}: {values}" if values else backend


def training_curves(store: RunStore, trials: list[TrialConfig], grid_keys: list[str]) -> list[Picture]:
    """One figure per trial of `store` that has a training history, in grid order."""
    pictures = []
    for config in trials:
        trial_dir = store.find(config)
        history_file = trial_dir / "history.csv" if trial_dir else None
        if history_file is None or not history_file.exists() or not history_file.stat().st_size:
            continue
        title = trial_label(config, grid_keys, store.backend)
        pictures.append(Picture.from_figure(curves_figure(pd.read_csv(history_file), title), trial_dir / CURVES_FILE, title))
    return pictures


@functools.lru_cache(maxsize=1)  # every backend's best trial usually needs the same data set
def _dataset(data_dir: Path | None, dataset: str, skip_bad: bool, multi_label: bool, split_fractions: tuple):
    return load_dataset(dataset, data_dir, skip_bad=skip_bad, multi_label=multi_label, split_fractions=split_fractions)


def misclassified_thumbnails(trial_dir: Path, rows: pd.DataFrame, data_dir: Path | None) -> tuple[list[str], str]:
    """Thumbnails of the test images in `rows` (by their test-set index), and a note when there are none."""
    from kbench.training.feed import load_images
    from kbench.training.trial import prepared

    config = trial_config(read_json(trial_dir / CONFIG_FILE))
    try:
        full = _dataset(data_dir, config.dataset, config.skip_bad, config.multi_label, tuple(config.split_fractions))
        data, transform = prepared(full, config)
    except Exception as error:  # thumbnails are optional: say why they are missing, show the rest
        return [""] * len(rows), f"Test images unavailable ({type(error).__name__}: {error}); try --data-dir."
    indices = rows["index"].to_numpy()
    labels = [data.class_names[label] for label in data.test.labels[indices[indices < len(data.test)]]]
    if labels != rows["true"].tolist():  # a different data set or split: the pictures would lie
        return [""] * len(rows), f"The {config.dataset} test split here does not match this evaluation."
    return [thumbnail_uri(image) for image in load_images(data.test, transform, indices)], ""


def best_trial(backend_dir: Path, data_dir: Path | None, max_thumbnails: int = MAX_THUMBNAILS) -> BestTrial | None:
    """The evaluation of the best trial recorded in `backend_dir`, or None before any evaluation."""
    if not (backend_dir / BEST_TRIAL_FILE).exists():
        return None
    trial_dir = backend_dir / read_json(backend_dir / BEST_TRIAL_FILE)["trial"]
    evaluation = trial_dir / EVALUATION_DIR
    if not (evaluation / SUMMARY_FILE).exists():
        return None
    per_class = pd.read_csv(evaluation / "per_class.csv", dtype={"class": str})
    class_names = per_class["class"].tolist()
    wrong = pd.read_csv(evaluation / "misclassified.csv", dtype={"true": str, "predicted": str})
    shown = wrong.head(max_thumbnails).copy()
    thumbnails, note = misclassified_thumbnails(trial_dir, shown, data_dir)
    shown["src"] = thumbnails
    if len(shown) < len(wrong):
        note = f"The {len(shown)} most confident of {len(wrong)} mistakes. {note}".strip()
    pictures = [
        Picture.from_file(evaluation / file, title)
        for file, title in (("confusion_matrix.png", "confusion matrix"), ("per_class.png", "per-class metrics"))
        if (evaluation / file).exists()
    ]
    return BestTrial(
        backend_dir.name, trial_dir.name, read_json(evaluation / SUMMARY_FILE), per_class, pictures, shown, class_names, note
    )


def collect_report(
    experiment: Experiment, overrides: Overrides, logs_dir: Path, data_dir: Path | None = None
) -> Report:
    """Gather the table, comparison, curves and best-trial evaluations of one experiment run."""
    run = run_name(experiment.name, overrides.quick)
    backends = backends_with_results(logs_dir, run)
    if not backends:
        quick = " --quick" if overrides.quick else ""
        raise KbenchError(f"no results in {logs_dir / run}; run `kbench run {experiment.name}{quick}` first")
    plan = resolve_trials(experiment, overrides)
    report = Report(experiment, logs_dir / run, results_table(experiment, overrides, logs_dir, backends), backends)
    report.comparison = backend_comparison(report.table, plan.grid_keys)
    if report.comparison is not None:
        figure = comparison_figure(report.comparison)
        title = "test accuracy and images/s per backend"
        report.comparison_pictures.append(Picture.from_figure(figure, report.run_dir / BACKENDS_FILE, title))
    if (report.run_dir / COMPARE_FILE).exists():
        report.comparison_pictures.append(Picture.from_file(report.run_dir / COMPARE_FILE, "kbench compare"))
    for backend in backends:
        report.curves += training_curves(RunStore(logs_dir, run, backend), plan.trials, plan.grid_keys)
        best = best_trial(report.run_dir / backend, data_dir)
        if best is not None:
            report.best_trials.append(best)
    return report


# ----------------------------------------------------------------------------- HTML


def column_format(column: str, values: pd.Series) -> str | None:
    """How a table column's numbers read best; None to show values as they are."""
    if "accuracy" in column or "loss" in column:
        return "{:.4f}"
    if column.endswith("_per_s") or column in ("params", "best_epoch", "epochs_run"):
        return "{:,.0f}"
    if column.endswith("_s"):
        return "{:.1f}"
    if pd.api.types.is_float_dtype(values):  # grid values such as learning_rate=0.01, in their shortest form
        return "{:g}"
    return None


def _formats(frame: pd.DataFrame, name=lambda column: column) -> dict[Any, str]:
    formats = {column: column_format(name(column), frame[column]) for column in frame.columns}
    return {column: fmt for column, fmt in formats.items() if fmt}


def styled_results(table: pd.DataFrame) -> str:
    """The results table as HTML: formatted numbers, published columns shaded, sortable headers."""
    styler = (
        table.style.set_uuid("results")  # the table's id: T_results
        .hide(axis="index")
        .format(_formats(table), na_rep="–")
        .set_table_attributes('class="sortable"')
    )
    published = [column for column in table if column.startswith("published_")]
    if published:
        styler = styler.set_properties(subset=published, **{"background-color": "#eaf1fb"})
    return styler.to_html()


def styled_comparison(comparison: pd.DataFrame) -> str:
    """The backend pivot as HTML; its columns are (metric, backend) pairs."""
    return comparison.style.format(_formats(comparison, name=lambda column: column[0]), na_rep="–").to_html()


def styled_per_class(per_class: pd.DataFrame) -> str:
    """Precision, recall and F1 per class, coloured from red (0) to green (1); sortable."""
    scores = ["precision", "recall", "f1-score"]
    return (
        per_class.style.hide(axis="index")
        .format("{:.3f}", subset=scores)
        .format("{:.0f}", subset=["support"])
        .background_gradient(cmap="RdYlGn", vmin=0, vmax=1, subset=scores)
        .set_table_attributes('class="sortable"')
        .to_html()
    )


def dashboard(best: BestTrial) -> dict[str, Any]:
    """What the template needs of a best trial: styled tables, cards, and the classes to filter by."""
    mistakes = best.misclassified

    def present(column: str) -> list[str]:  # in class order, only classes that occur
        return [name for name in best.class_names if name in set(mistakes[column])]

    return {
        "backend": best.backend,
        "trial": best.trial,
        "summary": best.summary,
        "pictures": best.pictures,
        "per_class_html": styled_per_class(best.per_class),
        "cards": mistakes.to_dict("records"),
        "true_classes": present("true"),
        "predicted_classes": present("predicted"),
        "note": best.note,
    }


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    import jinja2

    from kbench.reports.report_template import PAGE

    template = jinja2.Environment(autoescape=True).from_string(PAGE)
    return template.render(
        title=report.title,
        description=report.experiment.description,
        generated=datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_dir=report.run_dir,
        backends=report.backends,
        published_source=report.experiment.published_source,
        results_html=styled_results(report.table),
        comparison_html=styled_comparison(report.comparison) if report.comparison is not None else "",
        comparison_pictures=report.comparison_pictures,
        curves=report.curves,
        best_trials=[dashboard(best) for best in report.best_trials],
    )


# ----------------------------------------------------------------------------- Markdown


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table without the index; missing values as a dash."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="–")


def render_markdown(report: Report, out_dir: Path) -> str:
    """The report as Markdown in `out_dir`, linking its images by relative path (saving the new ones)."""

    def image(picture: Picture) -> str:
        return f"![{picture.title}]({Path(os.path.relpath(picture.save(), out_dir)).as_posix()})"

    lines = [f"# {report.title}", "", report.experiment.description, "", f"Backends: {', '.join(report.backends)}.", ""]
    lines += ["## Results", "", markdown_table(report.table), ""]
    if report.experiment.published_source:
        lines += [f"`published_*` columns: {report.experiment.published_source}.", ""]
    if report.comparison is not None:
        comparison = report.comparison.reset_index()
        comparison.columns = [" ".join(column).strip() for column in comparison.columns]
        lines += ["## Backends", "", markdown_table(comparison), ""]
    lines += [image(picture) for picture in report.comparison_pictures] + [""]
    lines += ["## Training curves", ""] + [image(picture) for picture in report.curves] + [""]
    for best in report.best_trials:
        summary = best.summary
        lines += [
            f"## Best trial on {best.backend}: {best.trial}",
            "",
            f"Reloaded checkpoint: test accuracy {summary['checkpoint_test_accuracy']:.4f}, macro F1 "
            f"{summary['macro_f1']:.4f}, {summary['misclassified']} of {summary['n_test']} test images misclassified.",
            "",
            *[image(picture) for picture in best.pictures],
            "",
            markdown_table(best.per_class),
            "",
            f"### Most confident mistakes (of {summary['misclassified']})",
            "",
            markdown_table(best.misclassified.drop(columns="src").head(MARKDOWN_MISTAKES)),
            "",
        ]
        gallery = out_dir / best.backend / best.trial / EVALUATION_DIR / "misclassified.png"
        if gallery.exists():
            lines += [image(Picture.from_file(gallery, "misclassified test images")), ""]
    return "\n".join(lines)


def write_report(
    experiment: Experiment, overrides: Overrides, logs_dir: Path, data_dir: Path | None = None
) -> tuple[Path, Path]:
    """Write report.html and report.md into logs/<run>/; returns their paths."""
    report = collect_report(experiment, overrides, logs_dir, data_dir)
    html_path, markdown_path = report.run_dir / REPORT_HTML, report.run_dir / REPORT_MD
    html_path.write_text(render_html(report), encoding="utf-8")
    markdown_path.write_text(render_markdown(report, report.run_dir), encoding="utf-8")
    return html_path, markdown_path
