"""The report's label-audit section (id "label-audit"): what `kbench audit` flagged, with thumbnails.

Reads the audit's stored files only (kbench.results.label_issues): label_issues.csv, thumbnails.npz
and audit.json in the run's label_audit/<plan key>/ folder on each backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from kbench.atomic import read_json
from kbench.results import label_issues
from kbench.results.thumbnails import load_thumbnails

SECTION_ID = "label-audit"
SHOWN = 60  # flagged images shown as thumbnails per backend; the CSV has them all
MARKDOWN_ROWS = 20


@dataclass
class Section:
    """A report section of its own module: anchor id, title, and its HTML and Markdown bodies."""

    id: str
    title: str
    html: str
    markdown: str


TEMPLATE = jinja2.Environment(autoescape=True).from_string("""
{% for audit in audits %}
<p>{{ audit.backend }}: {{ audit.summary.issues }} of {{ audit.summary.n_images }} training images look mislabelled
(cleanlab, out-of-fold probabilities of {{ audit.summary.folds }} folds of {{ audit.summary.recipe_note }}; out-of-fold
accuracy {{ "%.3f" | format(audit.summary.out_of_fold_accuracy) }}). All of them, worst first:
<code>{{ audit.csv }}</code>.</p>
<ul>{% for pair in audit.summary.pairs[:10] %}<li>{{ pair.suggested }} labelled {{ pair.given }}: {{ pair.count }}</li>{% endfor %}</ul>
<div class="gallery">
{% for card in audit.cards %}<figure class="thumb flagged" title="{{ card.path }}">
{% if card.src %}<img src="{{ card.src }}" alt="{{ card.path }}">{% endif %}
<figcaption>{{ card.name }}<br>given {{ card.given_label }}<br>likely {{ card.suggested_label }}<br>
<span class="confidence">q {{ "%.2f" | format(card.label_quality) }}</span></figcaption></figure>
{% endfor %}</div>
{% endfor %}
""")


def audit_section(audit_dirs: dict[str, Path], thumbnail_uri) -> Section | None:
    """The section for the audits found ({backend: its audit folder}); None when no audit ran for this run."""
    audits = []
    for backend, folder in audit_dirs.items():
        if not (folder / label_issues.SUMMARY_FILE).exists():
            continue
        issues = pd.read_csv(folder / label_issues.ISSUES_FILE, dtype={"given_label": str, "suggested_label": str})
        thumbnails = load_thumbnails(folder / label_issues.THUMBNAILS_FILE)
        cards = issues.head(SHOWN).assign(
            name=lambda table: [Path(p).name for p in table["path"]],
            src=[thumbnail_uri(thumbnails[i]) if i in thumbnails else "" for i in range(min(SHOWN, len(issues)))],
        )
        audits.append({"backend": backend, "summary": read_json(folder / label_issues.SUMMARY_FILE),
                       "csv": folder / label_issues.ISSUES_FILE, "cards": cards.to_dict("records"), "issues": issues})
    if not audits:
        return None
    markdown = []
    for audit in audits:
        summary = audit["summary"]
        markdown += [f"{audit['backend']}: {summary['issues']} of {summary['n_images']} training images look mislabelled "
                     f"({summary['folds']} folds; all in `{audit['csv']}`).", ""]
        markdown += [f"- {pair['suggested']} labelled {pair['given']}: {pair['count']}" for pair in summary["pairs"][:10]]
        markdown += ["", audit["issues"].head(MARKDOWN_ROWS).to_markdown(index=False), ""]
    return Section(SECTION_ID, "Label audit", TEMPLATE.render(audits=audits), "\n".join(markdown))
