"""The page of `kbench report`: a Jinja2 template with its CSS and JavaScript inline (one file, no network)."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1240px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: right; white-space: nowrap; }
thead th { background: #f3f3f3; position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th:hover { background: #e6e6e6; }
table.sortable thead th[data-order=asc]::after { content: " \\25B2"; }
table.sortable thead th[data-order=desc]::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
/* The results table: separate borders, so that pinned cells keep theirs while the rest scroll beneath. */
#T_results { border-collapse: separate; border-spacing: 0; border-top: 1px solid #ddd; border-left: 1px solid #ddd; }
#T_results th, #T_results td { border-width: 0 1px 1px 0; }
#T_results thead th.level0 { text-align: left; background: #e9edf2; }
#T_results thead th.level0 .group { position: sticky; left: calc(var(--pinned, 0px) + .55rem); }
#T_results .key { position: sticky; z-index: 1; background: #fff; }
#T_results thead .key { z-index: 2; background: #f3f3f3; }
#T_results .key.last { box-shadow: 3px 0 4px -2px rgba(0, 0, 0, .25); }
.column-groups { margin: .4rem 0; }
.column-groups label { margin-right: 1rem; }
{{ results.css | safe }}
.note { color: #666; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures img { max-width: 100%; border: 1px solid #eee; }
.curves img { width: 590px; }
.evaluation img { width: calc(50% - 1rem); }
.filters { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: center; margin: .6rem 0; }
.gallery { display: flex; flex-wrap: wrap; gap: .5rem; }
.thumb { margin: 0; padding: .3rem; border: 1px solid #ddd; border-radius: 4px; width: 92px; text-align: center;
         font-size: 12px; background: #fafafa; }
.thumb[hidden] { display: none; }
.thumb img { width: 64px; height: 64px; object-fit: contain; image-rendering: pixelated; }
.confidence { color: #b22222; font-weight: 600; }
.axes { display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }
.heatmap[hidden] { display: none; }
ul.effects { font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ description }}</p>
<p class="note">Generated {{ generated }} from <code>{{ run_dir }}</code>. Data: {{ datasets | join(", ") }}.
Backends: {{ backends | join(", ") }}.</p>
<nav><a href="#results">Results</a><a href="#grid-effects">Grid effects</a><a href="#backends">Backends</a>
<a href="#time-to-accuracy">Time to accuracy</a><a href="#curves">Training curves</a>
{% for best in best_trials %}<a href="#best-{{ best.backend }}">Best trial ({{ best.backend }})</a>{% endfor %}
{% for section in sections %}<a href="#{{ section.id }}">{{ section.title }}</a>{% endfor %}</nav>

<h2 id="results">Results</h2>
<p class="note">One row per grid point and backend; click a column header to sort. The settings, backend, status
and test accuracy stay in view when the table scrolls sideways.
{% if published_source %}Shaded <em>published</em> columns: {{ published_source }}.{% endif %}</p>
{% if published_note %}<p class="note">{{ published_note }}</p>{% endif %}
{% if code_note %}<p class="note">{{ code_note }}</p>{% endif %}
<div class="results">
{% if results.groups %}<span class="column-groups">Columns shown:</span>
{% for group in results.groups %}<input type="checkbox" id="show-{{ group.slug }}" checked>
<label for="show-{{ group.slug }}">{{ group.name }} ({{ group.positions | length }})</label>
{% endfor %}{% endif %}
<div class="scroll">{{ results.html | safe }}</div>
</div>

<h2 id="grid-effects">Grid effects</h2>
{% if effects %}
<p class="note">Which setting matters, and how much: <strong>{{ effects.metric }}</strong> (what the best trial is
chosen by) per value of each axis, mean &plusmn; std over seeds and the other axes; n trials each, {{ effects.trials }}
in all{% if effects.published %}; beside it, our mean and the study's figure of
{{ effects.published | replace("published_", "") }} (<em>{{ effects.published }}</em>){% endif %}.
Each axis's range of means against the spread between seeds:</p>
<ul class="effects">{% for line in effects.effect_lines %}<li>{{ line }}</li>{% endfor %}</ul>
<div class="axes">{% for axis in effect_axes %}<div class="axis" data-axis="{{ axis.axis }}">{{ axis.html | safe }}</div>{% endfor %}</div>
{% if heatmaps %}
<h3>Two axes</h3>
<p class="filters"><label>Axes <select id="heatmap-pair">{% for heatmap in heatmaps %}
<option value="{{ heatmap.slug }}">{{ heatmap.title }}</option>{% endfor %}</select></label>
<span class="note">The mean of {{ effects.metric }} over the other axes and seeds, per pair of values (rows \\ columns);
first the two axes with the largest ranges.</span></p>
{% for heatmap in heatmaps %}<div class="heatmap scroll" data-pair="{{ heatmap.slug }}"{% if not loop.first %} hidden{% endif %}>
{{ heatmap.html | safe }}</div>{% endfor %}
{% endif %}
<h3>All trials</h3>
<div class="figures"><img src="{{ effects.parallel.data_uri }}" alt="{{ effects.parallel.title }}"></div>
{% else %}
<p class="note">No effects to show yet: no finished trial, or a grid of one point.</p>
{% endif %}

<h2 id="backends">Backends</h2>
{% if comparison %}
<p class="note">Per grid point and backend, mean &plusmn; std over seeds: test accuracy, training throughput
(images/s, median over epochs after the first), compile time (the first epoch's extra time) and peak memory.</p>
<div class="scroll">{{ comparison_html | safe }}</div>
<p class="verdict">Does the backend change the answer? {{ comparison.verdict_summary }}</p>
<details><summary>Per grid point</summary>
<ul class="verdicts">{% for line in comparison.verdict_lines %}<li>{{ line }}</li>{% endfor %}</ul></details>
{% else %}
<p class="note">Finished results from one backend only ({{ backends | join(", ") }}): run the same grid with another
KERAS_BACKEND (or <code>kbench compare</code>) to compare backends here.</p>
{% endif %}
<div class="figures">{% for picture in comparison_pictures %}<img src="{{ picture.data_uri }}" alt="{{ picture.title }}">{% endfor %}</div>

<h2 id="time-to-accuracy">Time to accuracy</h2>
{% if over_time %}
<p class="note">{{ over_time.measured_on }} against training seconds, the first epoch's compile time left out, for
{% if over_time.point %}the best grid point ({{ over_time.point }}){% else %}the run{% endif %}: one line per seed
and backend.{% if over_time.target is not none %} Dashed: the target {{ over_time.target }}.{% endif %}</p>
<div class="figures"><img src="{{ over_time.picture.data_uri }}" alt="{{ over_time.picture.title }}"></div>
{% if over_time_html %}<div class="scroll">{{ over_time_html | safe }}</div>{% endif %}
{% else %}
<p class="note">No finished trial with a per-epoch history yet.</p>
{% endif %}

<h2 id="curves">Training curves</h2>
<div class="figures curves">
{% for picture in curves %}<img src="{{ picture.data_uri }}" alt="{{ picture.title }}" title="{{ picture.title }}">
{% else %}<p class="note">No training history yet.</p>{% endfor %}
</div>

{% for best in best_trials %}
<h2 id="best-{{ best.backend }}">Best trial on {{ best.backend }}: {{ best.trial }}</h2>
{% if not best.summary %}<p class="note">{{ best.note }}</p>{% else %}
<p>Chosen by validation accuracy. Its reloaded checkpoint: test accuracy
{{ "%.4f" | format(best.summary.checkpoint_test_accuracy) }}, macro F1 {{ "%.4f" | format(best.summary.macro_f1) }},
{{ best.summary.misclassified }} of {{ best.summary.n_test }} test images misclassified.</p>
<div class="figures evaluation">{% for picture in best.pictures %}<img src="{{ picture.data_uri }}" alt="{{ picture.title }}">{% endfor %}</div>
<h3>Per-class metrics</h3>
<div class="scroll">{{ best.per_class_html | safe }}</div>
<h3>Misclassified test images</h3>
<section class="misclassified" id="misclassified-{{ best.backend }}">
<div class="filters">
<label>True class <select class="filter-true"><option value="">all</option>
{% for name in best.true_classes %}<option value="{{ name }}">{{ name }}</option>{% endfor %}</select></label>
<label>Predicted class <select class="filter-predicted"><option value="">all</option>
{% for name in best.predicted_classes %}<option value="{{ name }}">{{ name }}</option>{% endfor %}</select></label>
<span class="shown-count note"></span>
</div>
{% if best.note %}<p class="note">{{ best.note }}</p>{% endif %}
<div class="gallery">
{% for card in best.cards %}<figure class="thumb" data-true="{{ card.true }}" data-predicted="{{ card.predicted }}">
{% if card.src %}<img src="{{ card.src }}" alt="test image {{ card.index }}">{% endif %}
<figcaption>#{{ card.index }}<br>{{ card.true }} &rarr; {{ card.predicted }}<br>
<span class="confidence">{{ "%.0f" | format(card.confidence * 100) }}%</span></figcaption></figure>
{% endfor %}
</div>
</section>
{% endif %}
{% endfor %}

{% for section in sections %}<h2 id="{{ section.id }}">{{ section.title }}</h2>
<section id="section-{{ section.id }}">{{ section.html | safe }}</section>
{% endfor %}

<script>
// The results table's key columns stay in view when it scrolls sideways: each is a sticky cell at the summed
// width of the key columns before it (widths depend on the content, hence measured here).
document.querySelectorAll("table[data-key-columns]").forEach((table) => {
  const count = Number(table.dataset.keyColumns);
  const pin = () => {
    const headers = [...table.tHead.rows[table.tHead.rows.length - 1].cells].slice(0, count);
    let left = 0;
    headers.forEach((header, column) => {
      table.querySelectorAll(`.col${column}`).forEach((cell) => {
        cell.classList.add("key");
        cell.classList.toggle("last", column === count - 1);
        cell.style.left = `${left}px`;
      });
      left += header.getBoundingClientRect().width;
    });
    table.style.setProperty("--pinned", `${left}px`);
  };
  pin();
  window.addEventListener("resize", pin);
});

// Sortable tables: click a header to sort by that column (numbers as numbers, blanks last), again to reverse.
// A table with a two-row header (the results' column groups) sorts by the lower row.
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = [...table.tHead.rows[table.tHead.rows.length - 1].cells];
  const key = (row, column) => {
    const text = row.cells[column].textContent.trim();
    const number = parseFloat(text.replace(/,/g, ""));
    return isNaN(number) ? text : number;
  };
  headers.forEach((header, column) => header.addEventListener("click", () => {
    const ascending = header.dataset.order !== "asc";
    headers.forEach((other) => delete other.dataset.order);
    header.dataset.order = ascending ? "asc" : "desc";
    const rows = [...table.tBodies[0].rows];
    rows.sort((a, b) => {
      const x = key(a, column), y = key(b, column);
      const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return ascending ? order : -order;
    });
    table.tBodies[0].append(...rows);
  }));
});

// Grid effects: show the heatmap of the pair of axes the select names.
const pairs = document.getElementById("heatmap-pair");
if (pairs) {
  pairs.addEventListener("change", () => document.querySelectorAll(".heatmap").forEach((map) => {
    map.hidden = map.dataset.pair !== pairs.value;
  }));
}

// Misclassification dashboards: show the images whose true and predicted classes match both selects.
document.querySelectorAll("section.misclassified").forEach((board) => {
  const byTrue = board.querySelector(".filter-true"), byPredicted = board.querySelector(".filter-predicted");
  const update = () => {
    let shown = 0;
    board.querySelectorAll(".thumb").forEach((card) => {
      const visible = (!byTrue.value || card.dataset.true === byTrue.value)
        && (!byPredicted.value || card.dataset.predicted === byPredicted.value);
      card.hidden = !visible;
      shown += visible;
    });
    board.querySelector(".shown-count").textContent = `${shown} shown`;
  };
  byTrue.addEventListener("change", update);
  byPredicted.addEventListener("change", update);
  update();
});
</script>
</body>
</html>
"""
