"""Would keras.applications networks train faster channels-first on PyTorch? (They stay channels-last in kbench.)

    KERAS_BACKEND=torch python benchmarks/applications_layout.py efficientnet_b0|mobilenet_v2|resnet50 channels_last|channels_first

Builds the application (random weights, 64x64 inputs, average-pooled, a
10-class head) in the given layout, by setting Keras's global image data
format while it is built, as kbench's own models do with their data_format
option (a Permute after a channels-last input). Trains one warm-up of 4 steps,
then one timed epoch of 1,024 random images at batch 64, and prints images/s.
"""

import sys
import time

import keras
import numpy as np
from keras import layers

CONSTRUCTORS = {
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
IMAGES, BATCH, SIZE = 1024, 64, 64

name, data_format = sys.argv[1], sys.argv[2]
previous = keras.config.image_data_format()
keras.config.set_image_data_format(data_format)  # keras.applications read the layout from here
shape = (3, SIZE, SIZE) if data_format == "channels_first" else (SIZE, SIZE, 3)
backbone = CONSTRUCTORS[name](include_top=False, weights=None, input_shape=shape, pooling="avg")
keras.config.set_image_data_format(previous)

inputs = keras.Input((SIZE, SIZE, 3))
x = layers.Permute((3, 1, 2))(inputs) if data_format == "channels_first" else inputs
model = keras.Model(inputs, layers.Dense(10)(backbone(x)))
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(0)
images = rng.random((IMAGES, SIZE, SIZE, 3), dtype=np.float32) * 255
labels = rng.integers(0, 10, IMAGES)
model.fit(images, labels, batch_size=BATCH, epochs=1, steps_per_epoch=4, verbose=0)
start = time.perf_counter()
model.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0)
print(f"{name} {data_format} {keras.backend.backend()}: {IMAGES / (time.perf_counter() - start):.0f} images/s")
