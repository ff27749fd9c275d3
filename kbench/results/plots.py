"""Matplotlib figures of a classifier's test results (pure functions of arrays)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str]) -> plt.Figure:
    size = max(5.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d"
    )
    ax.set_title("Confusion matrix (test set)")
    fig.tight_layout()
    return fig


def per_class_figure(per_class: pd.DataFrame) -> plt.Figure:
    """Grouped bars of precision, recall and F1 per class."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(per_class) + 2), 4))
    per_class[["precision", "recall", "f1-score"]].plot.bar(ax=ax, ylim=(0, 1), rot=45)
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1 (test set)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def gallery_figure(
    images: np.ndarray,
    true_labels: list[str],
    predicted_labels: list[str],
    confidences: np.ndarray,
    columns: int = 6,
) -> plt.Figure:
    """A grid of misclassified images titled 'true -> predicted (confidence)'."""
    titles = [f"{true}\n-> {predicted} ({confidence:.0%})"
              for true, predicted, confidence in zip(true_labels, predicted_labels, confidences)]
    return image_grid_figure(images, titles, "Misclassified test images: true -> predicted (confidence)",
                             columns, colors=["firebrick"] * len(titles))


def image_grid_figure(
    images: np.ndarray, titles: list[str], suptitle: str, columns: int = 6, colors: list[str] | None = None
) -> plt.Figure:
    """A grid of uint8 images with a title each (colours: per-image title colours)."""
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, int(np.ceil(count / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.8, rows * 2.0), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title, color in zip(axes.ravel(), images, titles, colors or ["black"] * count):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(title, fontsize=8, color=color)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path) -> None:
    """Write the figure as a PNG (atomically: a reader never sees half a picture) and close it."""
    from kbench.atomic import atomic_path

    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
