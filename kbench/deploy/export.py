"""`kbench export`: a trial's model as a serving artifact, checked in its own runtime.

Keras 3's `model.export` writes the artifact; which formats it writes from which backend (Keras 3.15,
tried in tests/test_deploy.py) is `SUPPORTED` below and docs/deploy.md's table. The model's
preprocessing is inside it (kbench's models rescale or normalise 0..255 pixels in their first
layers), so an artifact takes float32 pixels 0..255 of the size its README.md states. After writing,
the artifact runs on test images in its own runtime (ONNX Runtime, TensorFlow, LiteRT, torch.export)
and its probabilities are compared with Keras's; more than `TOLERANCE` apart fails the export.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kbench.deploy.model import TrainedTrial
from kbench.errors import KbenchError
from kbench.results import metrics as scores

FORMATS = ("keras", "tf_saved_model", "onnx", "torch", "litert")
ARTIFACTS = {"keras": "model.keras", "tf_saved_model": "saved_model", "onnx": "model.onnx", "torch": "model.pt2",
             "litert": "model.tflite"}
# The backends each format is exported from (Keras 3.15). Not listed, as Keras 3.15 stands: tf_saved_model from
# torch (torch.export's dynamic-shape error), onnx from jax (needs jax2onnx, which pulls Flax and Orbax; untested
# here), litert from jax (Keras refuses) and from torch (needs litert-torch; untested here), torch from others.
SUPPORTED = {"keras": ("tensorflow", "jax", "torch"), "tf_saved_model": ("tensorflow", "jax"),
             "onnx": ("tensorflow", "torch"), "litert": ("tensorflow",), "torch": ("torch",)}
# Python modules a format needs on a backend, to export and to check it, and the pip extra that installs each.
NEEDS = {("tf_saved_model", "jax"): ("tensorflow",), ("onnx", "tensorflow"): ("tf2onnx", "onnx", "onnxruntime"),
         ("onnx", "torch"): ("onnx", "onnxscript", "onnxruntime")}
EXTRAS = {"tensorflow": "tensorflow", "tf2onnx": "export-onnx", "onnx": "export-onnx", "onnxscript": "export-onnx",
          "onnxruntime": "export-onnx"}
TOLERANCE = 1e-4  # max abs difference in probability, float32
CHECK_IMAGES = 32
MAX_BATCH = 4096  # torch.export's batch dimension: 1..MAX_BATCH


def check_support(format: str, backend: str) -> None:
    """Raise a one-line KbenchError when `format` cannot be exported here: the backend to use, or the extra to install."""
    if backend not in SUPPORTED[format]:
        raise KbenchError(f"--format {format} is exported from the {' or '.join(SUPPORTED[format])} backend, not "
                          f"{backend}: run with KERAS_BACKEND={SUPPORTED[format][0]} (best.keras loads on any backend; "
                          "docs/deploy.md)")
    missing = [module for module in NEEDS.get((format, backend), ()) if importlib.util.find_spec(module) is None]
    if missing:
        extra = EXTRAS[missing[0]]
        raise KbenchError(f"--format {format} on {backend} needs {', '.join(missing)}: pip install 'kbench[{extra}]'")


def export_trial(trial: TrainedTrial, model, format: str, out: Path, images: np.ndarray) -> float:
    """Write the artifact, classes.json and README.md into `out`; return the check's max probability difference.

    Written into a temporary folder beside `out` and renamed once checked: `out` is complete or absent.
    Raises KbenchError when the difference is over TOLERANCE (nothing is left then).
    """
    import keras

    check_support(format, keras.backend.backend())
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        artifact = partial / ARTIFACTS[format]
        inputs = images.astype(np.float32)
        # Predicted first: Keras exports only a model that has been called.
        expected = _probabilities(np.asarray(model.predict(inputs, verbose=0)), trial)
        _write(model, format, artifact)
        got = _probabilities(RUNNERS[format](artifact, inputs), trial)
        difference = float(np.abs(got - expected).max()) if len(inputs) else 0.0
        if not difference <= TOLERANCE:
            raise KbenchError(f"--format {format}: the artifact's probabilities differ from Keras's by {difference:.3g} "
                              f"(more than {TOLERANCE:g}) on {len(inputs)} test images; nothing was written")
        (partial / "classes.json").write_text(json.dumps(trial.class_names, indent=1) + "\n")
        (partial / "README.md").write_text(readme(trial, model, format, difference, len(inputs)))
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
        return difference
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_replaceable(out: Path) -> None:
    """`out` may be replaced: absent, empty, or an earlier kbench export (classes.json and README.md)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (
            (out / "classes.json").exists() and (out / "README.md").exists()))):
        raise KbenchError(f"--out {out}: exists and is not an earlier kbench export; choose a new folder")


def _write(model, format: str, artifact: Path) -> None:
    if format == "keras":
        model.save(artifact)
        return
    options = {}
    if format == "torch":  # a batch of any size, not only the traced one
        import torch

        options["dynamic_shapes"] = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    model.export(str(artifact), format=format, verbose=False, **options)


def _probabilities(outputs, trial: TrainedTrial) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return scores.softmax(outputs) if trial.config.from_logits else outputs


# --------------------------------------------------------------------------- each format in its own runtime


def _run_keras(artifact: Path, images: np.ndarray) -> np.ndarray:
    import keras

    return keras.saving.load_model(artifact).predict(images, verbose=0)


def _run_saved_model(artifact: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(artifact))  # held: its variables must outlive the call
    return loaded.serve(tf.constant(images)).numpy()


def _run_onnx(artifact: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _run_torch(artifact: Path, images: np.ndarray) -> np.ndarray:
    import torch

    program = torch.export.load(str(artifact))
    with torch.no_grad():
        return program.module()(torch.from_numpy(images).to("cpu")).detach().cpu().numpy()


def _run_litert(artifact: Path, images: np.ndarray) -> np.ndarray:
    """LiteRT's interpreter (ai-edge-litert, else TensorFlow's tf.lite), one image at a time: Keras writes a
    batch dimension of 1."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(artifact))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in images:
        interpreter.set_tensor(source, image[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target))
    return np.concatenate(outputs)


RUNNERS = {"keras": _run_keras, "tf_saved_model": _run_saved_model, "onnx": _run_onnx, "torch": _run_torch,
           "litert": _run_litert}

USAGE = {
    "keras": "model = keras.saving.load_model('model.keras'); outputs = model.predict(images)",
    "tf_saved_model": "model = tf.saved_model.load('saved_model'); outputs = model.serve(images).numpy()",
    "onnx": "session = onnxruntime.InferenceSession('model.onnx')\n"
            "outputs = session.run(None, {session.get_inputs()[0].name: images})[0]",
    "torch": "program = torch.export.load('model.pt2'); outputs = program.module()(torch.from_numpy(images))",
    "litert": "interpreter = ai_edge_litert.interpreter.Interpreter('model.tflite')  # one image per invoke()",
}


def readme(trial: TrainedTrial, model, format: str, difference: float, checked: int) -> str:
    """The artifact's README: what goes in (shape, dtype, range, preprocessing), what comes out, how it was checked."""
    import keras

    height, width, channels = (int(size) for size in model.input_shape[1:])
    batch = "1 (one image per call)" if format == "litert" else "any"
    colour = "greyscale (one channel)" if channels == 1 else "RGB"
    transform = trial.transform(model)
    resize = ("resize the whole image to {0}x{0} (bilinear, antialiased when shrinking: Pillow's "
              "Image.resize(BILINEAR))" if transform.mode == "resize" else
              "resize the shorter side to round({0} * 256 / 224) (bilinear), then take the centre {0}x{0} crop")
    output = "logits: apply a softmax for probabilities" if trial.config.from_logits else "probabilities"
    return f"""# {trial.folder.name} ({format})

Exported by `kbench export` from the trial `{trial.folder.path}` (trained on {trial.backend}, exported with
Keras {keras.__version__} on {keras.backend.backend()}).

## Input

- shape: (batch, {height}, {width}, {channels}), channels last; batch: {batch}
- dtype: float32
- values: pixels 0..255, {colour}, not rescaled: the model rescales and normalises inside
- preprocessing before the model (as kbench's evaluation does): {resize.format(height)}

## Output

- shape: (batch, {len(trial.class_names)}): {output}
- class names, in output order: classes.json ({', '.join(trial.class_names[:10])}{', ...' if len(trial.class_names) > 10 else ''})

## Use

```python
{USAGE[format]}
```

## Check

On {checked} test images, the artifact's probabilities differ from Keras's by at most {difference:.3g}
(tolerance {TOLERANCE:g}).
"""


def check_images(trial: TrainedTrial, model, data_dir: Path | None = None, source: str | None = None) -> np.ndarray:
    """Up to CHECK_IMAGES model inputs (uint8 NHWC) for the check: the first readable images of `source`, else
    the first of the trial's test split, preprocessed as its evaluation did."""
    from kbench.deploy.model import as_model_input

    channels = int(model.input_shape[-1])
    if source is not None:
        from kbench.deploy.predict import _DecodedBatches
        from kbench.deploy.sources import list_sources

        entries = list_sources([source], trial.class_names)
        decoded = _DecodedBatches(entries, trial.transform(model), channels, len(entries) or 1)
        images = [pixels for batch in map(decoded.__getitem__, range(len(decoded)))
                  for _, pixels, _ in batch if pixels is not None][:CHECK_IMAGES]
        if not images:
            raise KbenchError(f"--check-images {source}: no readable images")
        return np.stack(images)
    from kbench.data import load_dataset
    from kbench.training.feed import load_images
    from kbench.training.trial import prepared

    config = trial.config
    data, transform = prepared(load_dataset(config.dataset, data_dir, skip_bad=True, multi_label=config.multi_label,
                                            split_fractions=config.split_fractions), config)
    images = load_images(data.test, transform, np.arange(min(CHECK_IMAGES, len(data.test))))
    return np.stack([as_model_input(image, channels) for image in images])
