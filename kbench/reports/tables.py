"""The report's tables as HTML (pandas Styler): number formats, `n/a` for missing values, and the
results table's column groups and key columns.

The results table can be wider than any window (S5 adds a column per class,
per group and per published figure). Its columns are grouped under a second
header row, and each group but the key one can be hidden on the page (a
checkbox per group, plain CSS); the key columns, settings, backend, status and
test accuracy, stay pinned at the left while the rest scroll (CSS sticky
cells; the page's script sets their offsets, since column widths depend on
the content).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

NA = "n/a"  # how a missing value reads everywhere in the report

KEY_GROUP, OTHER_GROUP, PUBLISHED = "trial", "metrics", "published"
# Groups of metric columns by name prefix; the prefix is dropped from the header, the group's name says it.
PREFIX_GROUPS = {"group_accuracy_": "per group", "class_accuracy_": "per class"}
GROUP_ORDER = [KEY_GROUP, OTHER_GROUP, "per group", "per class", PUBLISHED, "published per group", "published per class"]
# What each checkbox hides: per-class (per-group) figures, ours and the study's, or all published ones.
TOGGLES = {
    OTHER_GROUP: [OTHER_GROUP],
    "per group": ["per group", "published per group"],
    "per class": ["per class", "published per class"],
    PUBLISHED: [PUBLISHED, "published per group", "published per class"],
}
KEY_METRICS = ["backend", "status", "test_accuracy"]  # after the grid's settings


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


@dataclass
class ColumnGroup:
    """A group of the results table's columns that the reader can hide."""

    name: str
    positions: list[int]  # the columns' positions in the table (Styler's col<N> classes)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclass
class ResultsTable:
    """The results table's HTML, how many leading columns stay in view, and its groups that can be hidden."""

    html: str
    key_columns: int
    groups: list[ColumnGroup]

    @property
    def css(self) -> str:
        """Rules hiding each group's cells while its checkbox (#show-<slug>, a sibling before the
        table's .scroll box) is unchecked."""
        return "\n".join(
            f"#show-{group.slug}:not(:checked) ~ .scroll #T_results "
            f":is({', '.join(f'.col{position}' for position in group.positions)}) {{ display: none; }}"
            for group in self.groups
        )


def column_group(column: str, keys: list[str]) -> tuple[str, str]:
    """(group, header) of a results column: key columns, other metrics, per group, per class, and the
    published figures (overall, per group, per class)."""
    if column in keys:
        return KEY_GROUP, column
    published = column.startswith("published_")
    name = column.removeprefix("published_")
    for prefix, group in PREFIX_GROUPS.items():
        if name.startswith(prefix):
            return f"{PUBLISHED} {group}" if published else group, name[len(prefix):]
    return PUBLISHED if published else OTHER_GROUP, name


def group_label(group: str) -> str:
    """A group's header: a span that stays visible right of the pinned key columns while any of the group
    is in view (sticky inside its spanning cell; the page's script sets --pinned to their width)."""
    return group if group == KEY_GROUP else f'<span class="group">{group}</span>'


def styled_results(table: pd.DataFrame, grid_keys: list[str]) -> ResultsTable:
    """The results table as HTML under a two-row header (group, column): formatted numbers, `n/a` for
    missing values, published columns shaded, sortable headers, the key columns first."""
    keys = [column for column in [*grid_keys, *KEY_METRICS] if column in table]
    labels = {column: column_group(column, keys) for column in table}
    # Groups must be contiguous to share a header cell; the sort is stable, so each keeps its own order.
    order = sorted(table.columns, key=lambda column: GROUP_ORDER.index(labels[column][0]))
    grouped = table[order].copy()
    grouped.columns = pd.MultiIndex.from_tuples([labels[column] for column in order])
    formats = {labels[column]: fmt for column, fmt in _formats(table[order]).items()}
    styler = (
        grouped.style.set_uuid("results")  # the table's id: T_results
        .hide(axis="index")
        .format(na_rep=NA)  # every column, also those shown as they are (None in a grid value, say)
        .format(formats, na_rep=NA)
        .format_index(group_label, axis="columns", level=0)
        .set_table_attributes(f'class="sortable" data-key-columns="{len(keys)}"')
    )
    published = [labels[column] for column in order if column.startswith("published_")]
    if published:
        styler = styler.set_properties(subset=published, **{"background-color": "#eaf1fb"})
    groups = [
        ColumnGroup(name, [position for position, column in enumerate(order) if labels[column][0] in covered])
        for name, covered in TOGGLES.items()
    ]
    return ResultsTable(styler.to_html(), len(keys), [group for group in groups if group.positions])


def styled_per_class(per_class: pd.DataFrame) -> str:
    """Precision, recall and F1 per class, coloured from red (0) to green (1); sortable."""
    scores = ["precision", "recall", "f1-score"]
    return (
        per_class.style.hide(axis="index")
        .format("{:.3f}", subset=scores, na_rep=NA)
        .format("{:.0f}", subset=["support"], na_rep=NA)
        .background_gradient(cmap="RdYlGn", vmin=0, vmax=1, subset=scores)
        .set_table_attributes('class="sortable"')
        .to_html()
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table without the index; missing values as `n/a`."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval=NA)
