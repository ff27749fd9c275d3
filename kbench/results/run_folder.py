"""A run's own folder, logs/<experiment>[-quick]/: the files that belong to the whole run rather than to one
backend or one trial, each named here once. Each backend's results sit beside them, in a folder of its own
(kbench.results.store.RunStore), and each trial's in a folder below that (kbench.results.trial_folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """logs/<run>/ and the run-level files: `kbench compare`'s table and chart, `kbench report`'s pages and the
    figures the report draws beside them (named report_*.png, so that no file or folder reads as a backend)."""

    logs_dir: Path
    run: str

    @property
    def path(self) -> Path:
        return self.logs_dir / self.run

    @property
    def comparison_csv(self) -> Path:
        return self.path / "comparison.csv"

    @property
    def comparison_png(self) -> Path:
        return self.path / "comparison.png"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    def report_figure(self, name: str) -> Path:
        """A figure of the report, saved for its Markdown version: report_<name>.png."""
        return self.path / f"report_{name}.png"
