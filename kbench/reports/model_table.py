"""`kbench models`: every registered model's parameters and GMACs at an input shape, cached.

Building all models takes half a minute on a CPU (the keras.applications ones most of it), and the answer
changes only with kbench's model sources and the Keras version, so each row is cached per model, input
shape and classes (kbench.catalogue.cached_json): only a model never asked about before is built.
"""

from __future__ import annotations

from kbench.catalogue import cached_json, catalogue
from kbench.errors import KbenchError

COLUMNS = ["model", "params", "trainable", "GMACs", "description"]


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'32,32,3' -> (32, 32, 3), with a KbenchError for anything else."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise KbenchError(f"--input-shape {text!r}: expected HEIGHT,WIDTH,CHANNELS, e.g. 32,32,3")
    return shape


def model_table(names: list[str] | None, input_shape: tuple[int, ...], num_classes: int):
    """A pandas DataFrame, one row per model (kbench.models.complexity.model_row); a model that cannot be built
    for this shape gets empty numbers and the reason."""
    import pandas as pd

    known = sorted(catalogue().models)
    unknown = [name for name in names or [] if name not in known]
    if unknown:  # before any building
        raise KbenchError(f"unknown model {unknown[0]!r}; known: {', '.join(known)}")

    def row(name: str) -> dict:
        from kbench.models.complexity import model_row

        return model_row(name, input_shape, num_classes)

    shape = "x".join(map(str, input_shape))
    rows = [cached_json(f"models/{name}-{shape}-{num_classes}", lambda name=name: row(name)) for name in names or known]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"params": "Int64", "trainable": "Int64", "GMACs": float})  # Int64: integers beside a gap


def format_model_table(table) -> str:
    """The table as aligned text: thousands separators for counts, 4 significant digits for GMACs, '-' when missing."""
    import pandas as pd

    def number(form: str):
        return lambda value: "-" if pd.isna(value) else format(value, form)

    def left(column: str):
        # pandas right-aligns strings; names and sentences read better left-aligned.
        width = max(len(column), *(len(str(value)) for value in table[column])) if len(table) else 0
        return lambda value: str(value).ljust(width)

    formatters = {"params": number(","), "trainable": number(","), "GMACs": number(".4g"),
                  "model": left("model"), "description": left("description")}
    text = table.astype(object).apply(lambda column: column.map(formatters[column.name]))
    return "\n".join(line.rstrip() for line in text.to_string(index=False, justify="left").splitlines())
