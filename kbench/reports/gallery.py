"""The report's gallery section (id "gallery"), S4's picture: test images of each backend's best trial with
their predicted and true labels, right ones and wrong ones.

Reads stored files only: the evaluation's predictions.csv and gallery_thumbnails.npz (kbench.training.evaluation).
"""

from __future__ import annotations

import jinja2
import pandas as pd

from kbench.reports.label_audit import Section
from kbench.results.thumbnails import load_thumbnails
from kbench.results.trial_folder import Evaluation, TrialFolder

SECTION_ID = "gallery"

TEMPLATE = jinja2.Environment(autoescape=True).from_string("""
<p class="note">Test images of the best trial with the predicted label (and the true one): green right, red wrong.
The first right and the first wrong images of the test set, in its order.</p>
{% for board in boards %}<h3>{{ board.backend }}: {{ board.trial }}</h3>
<div class="gallery">
{% for card in board.cards %}<figure class="thumb sample" style="border-color: {{ 'darkgreen' if card.correct else 'firebrick' }}">
<img src="{{ card.src }}" alt="test image {{ card.index }}">
<figcaption>#{{ card.index }}<br><strong style="color: {{ 'darkgreen' if card.correct else 'firebrick' }}">{{ card.predicted }}</strong>
<br>(true {{ card.true }})</figcaption></figure>
{% endfor %}</div>
{% endfor %}
""")


def gallery_section(best_trials: dict[str, TrialFolder], thumbnail_uri) -> Section | None:
    """The section for the best trials whose evaluation stored gallery thumbnails ({backend: folder}); None if none."""
    boards, markdown = [], []
    for backend, folder in best_trials.items():
        stored = folder.evaluation_file(Evaluation.GALLERY_THUMBNAILS)
        if not stored.exists() or not folder.evaluation_file(Evaluation.PREDICTIONS).exists():
            continue
        thumbnails = load_thumbnails(stored)
        predictions = pd.read_csv(folder.evaluation_file(Evaluation.PREDICTIONS), dtype={"true": str, "predicted": str})
        shown = predictions[predictions["index"].isin(list(thumbnails))]
        cards = shown.assign(src=[thumbnail_uri(thumbnails[i]) for i in shown["index"]]).to_dict("records")
        boards.append({"backend": backend, "trial": folder.name, "cards": cards})
        right = int(shown["correct"].sum())
        markdown += [f"{backend} ({folder.name}): {right} right and {len(shown) - right} wrong test images.", "",
                     shown[["index", "true", "predicted", "confidence", "correct"]].to_markdown(index=False), ""]
    if not boards:
        return None
    return Section(SECTION_ID, "Test images: predicted and true labels", TEMPLATE.render(boards=boards), "\n".join(markdown))
