"""`kbench report`: one self-contained HTML page, and a Markdown twin, of an experiment's results.

The page is a single file (figures and thumbnails as base64 data URIs, a few
lines of inline JavaScript to sort tables and filter the misclassified
images), so it can be mailed or archived on its own. Markdown viewers rarely
show data URIs, so the Markdown version links to PNG files instead: the
evaluation's own, and the figures made here, saved where they belong (a
trial's curves in its folder, the backend comparison beside the report; never
a new folder beside the backends' folders, which would read as a backend).

Sections: the results table (published figures beside ours when the run used
the study's own data; its column groups and pinned key columns: tables.py),
the grid's effects (grid_effects.py), the backends side by side when several
ran (backends.py), time to accuracy (accuracy_over_time.py), training curves
per trial, and for each backend's best trial its confusion matrix, per-class
metrics and a misclassification dashboard.
"""

from __future__ import annotations

import io
import os
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from PIL import Image

from kbench.atomic import read_json, write_text_atomic
from kbench.code_version import older_note
from kbench.config import Experiment, Overrides, TrialConfig, looks_like_path
from kbench.errors import KbenchError
from kbench.results import plots
from kbench.reports import grid_effects
from kbench.reports.accuracy_over_time import AccuracyOverTime, accuracy_over_time
from kbench.reports.backends import BackendComparison, backend_results, display_table
from kbench.reports.gallery import gallery_section
from kbench.reports.grid_effects import GridEffects
from kbench.reports.label_audit import audit_section
from kbench.reports.pictures import Picture, png_data_uri
from kbench.reports.tables import markdown_table, styled_per_class, styled_results
from kbench.results.store import RunStore, backends_with_results, run_name, run_plan
from kbench.results.rules import best_finished
from kbench.results.run_folder import RunFolder
from kbench.results.table import CODE_COLUMN, older_trials, results_table, study_datasets
from kbench.results.thumbnails import MAX_THUMBNAILS, THUMBNAIL_SIZE, load_thumbnails
from kbench.results.trial_folder import Evaluation, TrialFolder

plt = plots.plt  # pyplot with the file-only backend plots.py selects

MARKDOWN_MISTAKES = 20  # rows of the misclassified table in the Markdown version


# ----------------------------------------------------------------------------- pictures


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
    effects: GridEffects | None = None
    comparison: BackendComparison | None = None
    comparison_pictures: list[Picture] = field(default_factory=list)
    over_time: AccuracyOverTime | None = None
    curves: list[Picture] = field(default_factory=list)
    best_trials: list[BestTrial] = field(default_factory=list)
    grid_keys: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # as the trials name them (registered names or full paths)
    published_note: str = ""  # why the study's figures are left out, when they are
    code_note: str = ""  # which results another kbench version trained, and how to train them again
    sections: list = field(default_factory=list)  # sections of their own modules (kbench.reports.label_audit.Section)

    @property
    def title(self) -> str:
        """'<experiment> on <data set> (<backends>)': what was run, on what, where."""
        quick = " (quick)" if self.run_dir.name.endswith("-quick") else ""
        names = ", ".join(dataset_label(dataset) for dataset in self.datasets) or "no data set"
        return f"{self.experiment.name}{quick} on {names} ({', '.join(self.backends)})"


def dataset_label(dataset: str) -> str:
    """A data set as a title names it: a registered name as it is, a path by its last part."""
    return Path(dataset).name if looks_like_path(dataset) else dataset


def published_note(experiment: Experiment, datasets: list[str]) -> str:
    """One line saying why the study's published figures are not in the table: the run used other data
    than they were measured on ("" when some apply, or the study published none)."""
    studied = study_datasets(experiment)
    if not studied or set(studied) & set(datasets):
        return ""
    return (f"No published figures: {experiment.published_source or 'the study'} gives them for "
            f"{', '.join(map(dataset_label, studied))}; this run used {', '.join(map(dataset_label, datasets))}.")


def trial_label(config: TrialConfig, grid_keys: list[str], backend: str) -> str:
    values = ", ".join(f"{key}={config.get(key)}" for key in grid_keys)
    return f"{backend}: {values}" if values else backend


def training_curves(backend: str, trials: list[TrialConfig], folders: list[TrialFolder | None],
                    grid_keys: list[str]) -> list[Picture]:
    """One figure per trial of the run on `backend` that has a training history, in grid order."""
    pictures = []
    for config, folder in zip(trials, folders):
        history = folder.history() if folder is not None else pd.DataFrame()
        if history.empty:
            continue
        title = trial_label(config, grid_keys, backend)
        pictures.append(Picture.from_figure(curves_figure(history, title), folder.curves_file, title))
    return pictures


def best_trial(backend: str, folder: TrialFolder, max_thumbnails: int = MAX_THUMBNAILS) -> BestTrial | None:
    """The stored evaluation of a backend's best trial (None before one was written); the data set
    and the model are not needed."""
    evaluation = folder.evaluation_file
    error = folder.evaluation_error()
    if not folder.has_evaluation():
        return BestTrial(backend, folder.name, {}, pd.DataFrame(), [], pd.DataFrame(), [],
                         f"Evaluation failed: {error.strip().splitlines()[-1]}") if error else None
    per_class = pd.read_csv(evaluation(Evaluation.PER_CLASS_CSV), dtype={"class": str})
    wrong = pd.read_csv(evaluation(Evaluation.MISCLASSIFIED), dtype={"true": str, "predicted": str})
    shown = wrong.head(max_thumbnails).copy()
    thumbnails = load_thumbnails(evaluation(Evaluation.THUMBNAILS)) if evaluation(Evaluation.THUMBNAILS).exists() else {}
    shown["src"] = [thumbnail_uri(thumbnails[i]) if i in thumbnails else "" for i in shown["index"]]
    note = f"The {len(shown)} most confident of {len(wrong)} mistakes." if len(shown) < len(wrong) else ""
    pictures = [
        Picture.from_file(evaluation(file), title)
        for file, title in ((Evaluation.CONFUSION_PNG, "confusion matrix"), (Evaluation.PER_CLASS_PNG, "per-class metrics"))
        if evaluation(file).exists()
    ]
    return BestTrial(backend, folder.name, read_json(evaluation(Evaluation.SUMMARY)), per_class, pictures, shown,
                     per_class["class"].tolist(), note)


def collect_report(experiment: Experiment, overrides: Overrides, logs_dir: Path,
                   target_accuracy: float | None = None) -> Report:
    """Gather the table, grid effects, backend comparison, time to accuracy (with `target_accuracy` as its
    target line), curves and best-trial evaluations of one experiment run."""
    run = run_name(experiment.name, overrides.quick)
    backends = backends_with_results(logs_dir, run)
    if not backends:
        quick = " --quick" if overrides.quick else ""
        raise KbenchError(f"no results in {logs_dir / run}; run `kbench run {experiment.name}{quick}` first")
    plan = run_plan(experiment, overrides, logs_dir, backends)
    report = Report(experiment, logs_dir / run, results_table(experiment, overrides, logs_dir, backends), backends)
    report.grid_keys = plan.grid_keys
    report.datasets = list(dict.fromkeys(config.dataset for config in plan.trials))
    report.published_note = published_note(experiment, report.datasets)
    older = older_trials(report.table)
    if older:
        words = ["kbench", "run", experiment.name, *[w for text in overrides.sets for w in ("--set", text)],
                 *[w for text in overrides.grids for w in ("--grid", text)], *(["--quick"] if overrides.quick else [])]
        report.code_note = f"Column {CODE_COLUMN}: {older_note(older, shlex.join(words))}."
    report.effects = grid_effects.grid_effects(report.table, plan.grid_keys, RunFolder(logs_dir, run))
    report.comparison = backend_results(experiment, overrides, logs_dir, backends, plan.grid_keys, RunFolder(logs_dir, run))
    if report.comparison is not None:
        report.comparison_pictures += report.comparison.pictures
    stores = {backend: RunStore(logs_dir, run, backend) for backend in backends}
    folders = {backend: store.run_folders(plan.trials) for backend, store in stores.items()}  # read once: not cheap
    report.over_time = accuracy_over_time(folders, plan.trials, plan.grid_keys, target_accuracy, RunFolder(logs_dir, run))
    compared = RunFolder(logs_dir, run).comparison_png  # `kbench compare`'s chart, shown when it ran
    if compared.exists():
        report.comparison_pictures.append(Picture.from_file(compared, "kbench compare"))
    best_folders, audit_dirs = {}, {}
    for backend, store in stores.items():
        report.curves += training_curves(backend, plan.trials, folders[backend], plan.grid_keys)
        # The run's record names its best trial; without one (this grid never ran as one run), the best of its trials.
        folder = store.best_trial(plan.trials) or best_finished([f for f in folders[backend] if f])
        best = best_trial(backend, folder) if folder is not None else None
        if best is not None:
            report.best_trials.append(best)
            best_folders[backend] = folder
        audit_dirs[backend] = store.audit_dir(plan.trials)
    report.sections = [section for section in (gallery_section(best_folders, thumbnail_uri),
                                               audit_section(audit_dirs, thumbnail_uri)) if section is not None]
    return report


# ----------------------------------------------------------------------------- HTML


def has_published(table: pd.DataFrame) -> bool:
    return any(column.startswith("published_") for column in table)


def dashboard(best: BestTrial) -> dict[str, Any]:
    """What the template needs of a best trial: styled tables, cards, and the classes to filter by."""
    mistakes = best.misclassified
    if not best.summary:  # a failed evaluation: the template shows its note only
        return {"backend": best.backend, "trial": best.trial, "summary": {}, "note": best.note}

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


def effects_html(effects: GridEffects | None) -> list[dict[str, str]]:
    """Each axis's table of the grid-effects section as HTML."""
    if effects is None:
        return []
    return [{"axis": effect.axis, "html": grid_effects.axis_display(effect, effects.metric).style.hide(axis="index").to_html()}
            for effect in effects.axes]


def heatmaps_html(effects: GridEffects | None) -> list[dict[str, str]]:
    """Every pair's heatmap as HTML, all on one colour scale (the lowest to the highest axis mean)."""
    if effects is None or not effects.heatmaps:
        return []
    cells = np.concatenate([h.table.to_numpy(float).ravel() for h in effects.heatmaps])
    low, high = float(np.nanmin(cells)), float(np.nanmax(cells))
    return [{"slug": h.slug, "title": h.title, "html": grid_effects.styled_heatmap(h, low, high)} for h in effects.heatmaps]


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    import jinja2

    from kbench.reports.report_template import PAGE

    template = jinja2.Environment(autoescape=True).from_string(PAGE)
    results = styled_results(report.table, report.grid_keys)
    return template.render(
        title=report.title,
        description=report.experiment.description,
        generated=datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_dir=report.run_dir,
        backends=report.backends,
        datasets=report.datasets,
        published_source=report.experiment.published_source if has_published(report.table) else "",
        published_note=report.published_note,
        code_note=report.code_note,
        results=results,
        effects=report.effects,
        effect_axes=effects_html(report.effects),
        heatmaps=heatmaps_html(report.effects),
        comparison=report.comparison,
        comparison_html=display_table(report.comparison).style.hide(axis="index").to_html() if report.comparison else "",
        comparison_pictures=report.comparison_pictures,
        over_time=report.over_time,
        over_time_html=report.over_time.table.style.hide(axis="index").format(precision=2, na_rep="n/a").to_html()
        if report.over_time is not None and not report.over_time.table.empty else "",
        curves=report.curves,
        best_trials=[dashboard(best) for best in report.best_trials],
        sections=report.sections,
    )


# ----------------------------------------------------------------------------- Markdown


def markdown_effects(effects: GridEffects | None, image) -> list[str]:
    """The grid-effects section in Markdown: effect lines, a table per axis, the default heatmap, the chart."""
    if effects is None:
        return []
    lines = ["## Grid effects", "", f"{effects.metric}, mean ± std over seeds and the other axes ({effects.trials} trials).", ""]
    lines += [f"- {line}" for line in effects.effect_lines] + [""]
    for effect in effects.axes:
        lines += [markdown_table(grid_effects.axis_display(effect, effects.metric)), ""]
    if effects.heatmaps:
        lines += [f"### {effects.heatmaps[0].title}", "", markdown_table(grid_effects.markdown_heatmap(effects.heatmaps[0])), ""]
    return lines + [image(effects.parallel), ""]


def render_markdown(report: Report, out_dir: Path) -> str:
    """The report as Markdown in `out_dir`, linking its images by relative path (saving the new ones)."""

    def image(picture: Picture) -> str:
        return f"![{picture.title}]({Path(os.path.relpath(picture.save(), out_dir)).as_posix()})"

    lines = [f"# {report.title}", "", report.experiment.description, "", f"Backends: {', '.join(report.backends)}.", ""]
    lines += [f"Data: {', '.join(report.datasets)}.", ""]
    lines += ["## Results", "", markdown_table(report.table), ""]
    if report.experiment.published_source and has_published(report.table):
        lines += [f"`published_*` columns: {report.experiment.published_source}.", ""]
    if report.published_note:
        lines += [report.published_note, ""]
    if report.code_note:
        lines += [report.code_note, ""]
    lines += markdown_effects(report.effects, image)
    if report.comparison is not None:
        lines += ["## Backends", "", markdown_table(display_table(report.comparison)), "",
                  report.comparison.verdict_summary, ""]
        lines += [f"- {line}" for line in report.comparison.verdict_lines] + [""]
    lines += [image(picture) for picture in report.comparison_pictures] + [""]
    if report.over_time is not None:
        lines += ["## Time to accuracy", "", image(report.over_time.picture), ""]
        if not report.over_time.table.empty:
            lines += [markdown_table(report.over_time.table), ""]
    lines += ["## Training curves", ""] + [image(picture) for picture in report.curves] + [""]
    for best in report.best_trials:
        summary = best.summary
        if not summary:  # the evaluation failed: say so instead of showing nothing
            lines += [f"## Best trial on {best.backend}: {best.trial}", "", best.note, ""]
            continue
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
        gallery = TrialFolder(out_dir / best.backend / best.trial).evaluation_file(Evaluation.GALLERY_PNG)
        if gallery.exists():
            lines += [image(Picture.from_file(gallery, "misclassified test images")), ""]
    for section in report.sections:
        lines += [f"## {section.title}", "", section.markdown, ""]
    return "\n".join(lines)


def write_report(experiment: Experiment, overrides: Overrides, logs_dir: Path,
                 target_accuracy: float | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md into logs/<run>/; returns their paths."""
    report = collect_report(experiment, overrides, logs_dir, target_accuracy)
    files = RunFolder(report.run_dir.parent, report.run_dir.name)
    html_path, markdown_path = files.report_html, files.report_md
    write_text_atomic(html_path, render_html(report))
    write_text_atomic(markdown_path, render_markdown(report, report.run_dir))
    return html_path, markdown_path
