"""The report's pictures: PNGs embedded in the HTML page as data URIs and linked by path from the Markdown one."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from kbench.atomic import write_bytes_atomic
from kbench.results import plots

plt = plots.plt  # pyplot with the file-only backend plots.py selects


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
            write_bytes_atomic(self.path, self.png)
            self.saved = True
        return self.path

    @property
    def data_uri(self) -> str:
        return png_data_uri(self.png)
