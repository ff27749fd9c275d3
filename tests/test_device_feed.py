"""kbench.training.device_feed: batches moved ahead of the step, in order, dtypes kept, errors raised where they happen."""

import keras
import numpy as np
import pytest

from kbench.training.device_feed import device_batches, on_device


def batches(n):
    for i in range(n):
        yield np.full((2, 4, 4, 3), i, np.uint8), np.array([i, i], np.int32)


def test_batches_arrive_in_order_as_backend_tensors_with_their_dtypes():
    moved = list(device_batches(batches(5), prefetch=2))
    assert [int(keras.ops.convert_to_numpy(y)[0]) for _, y in moved] == list(range(5))
    x = moved[3][0]
    assert keras.backend.standardize_dtype(x.dtype) == "uint8"  # moved as uint8, cast by the model
    assert (keras.ops.convert_to_numpy(x) == 3).all()


def test_an_error_in_the_feed_is_raised_at_its_batch_and_an_early_stop_does_not_hang():
    def broken():
        yield from batches(2)
        raise OSError("disk gone")

    moved = device_batches(broken())
    next(moved), next(moved)
    with pytest.raises(OSError, match="disk gone"):
        next(moved)
    endless = device_batches(batches(10**6), prefetch=1)
    next(endless)
    endless.close()  # the producer thread, blocked on a full queue, is released


def test_on_device_moves_the_feed_only_to_an_accelerator():
    from kbench.training.environment import accelerator

    feed = batches(1)
    moved = keras.backend.backend() in ("jax", "torch") and accelerator() != "cpu"
    assert (on_device(feed) is not feed) == moved  # a CPU has nothing to move; TensorFlow's tf.data moves its own
