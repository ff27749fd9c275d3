"""cifar_speedrun: airbench94 (Keller Jordan) written once in Keras 3; time to 94 % CIFAR-10 test accuracy.

    kbench run cifar_speedrun --data-dir ../shared/data            # one seed, 10 epochs
    kbench compare cifar_speedrun --seeds 5 --target-accuracy 0.94 --data-dir ../shared/data
    kbench run cifar_speedrun --quick                              # tiny subset, narrow net: a smoke run

The recipe (airbench94.py, cifar10-airbench; 94.01 % mean over 1,000 runs in
3.83 s on an A100): the `airbench94` model (kbench/models/airbench.py: a frozen
2x2 patch-whitening conv with 24 channels initialised from 5,000 training
images, GELU, three conv groups of widths 64/256/256 with BatchNorm of momentum
0.6, eps 1e-12, no trainable scale and biases at 64x the learning rate,
Dirac-initialised convs, max-pool 3, a bias-free linear head scaled by 1/9);
batch 1024; Nesterov SGD, momentum 0.85; label smoothing 0.2; the triangle
learning-rate schedule (0.2 -> 1 at 23 % of training -> 0.07); the lookahead
EMA of all weights every 5 steps from epoch 3 (decay 0.95^5 x progress^3);
random 2-pixel shifts with reflected borders and alternating flips (a fixed
random half of the images mirrored in even epochs, the other half in odd
ones, done by kbench's input feed: `augment=shift2_alternating_flip`); test-time
augmentation over flips and 1-pixel shifts (6 views); trained on all 50,000
training images (no validation split) and tested on the test set after every
epoch, which is where time to accuracy is read.

airbench's numbers, converted (its loss is summed over the batch; Keras's is
the batch mean, so gradients here are 1/1024 of airbench's):
- learning rate: 11.5 / (1024 x (1 + 1 / (1 - 0.85))) per summed example
  = 0.0014648, i.e. 1.5 for the mean loss.
- weight decay: airbench passes PyTorch's SGD weight_decay = wd / lr =
  0.0153 x 1024 / 11.5 = 1.3624 (added to the summed gradient before momentum);
  for the mean loss that is 1.3624 / 1024 = 0.0153 / 11.5 = 0.0013304, coupled
  (weight_decay_style=coupled, kbench.training.weight_decay). BatchNorm biases
  get 1/64 of it in airbench, with 64x the learning rate: the same decay per
  step, which the 8x bias reparametrisation of kbench's model reproduces with
  one coefficient for every weight.

Deviations from airbench94, and why:
- 10 whole epochs with the schedule over all of them, not 9.9: kbench trains
  whole epochs. Each epoch drops its partial last batch as airbench does
  (`drop_last_batch`: 48 steps of 1024), so 480 steps against airbench's 476.
- The whitening layer's bias is trained throughout; airbench freezes it after
  3 epochs, which its ablation shows only saves time (no change in accuracy),
  and freezing mid-fit would need a recompile on JAX.
- float32 everywhere (airbench: fp16 weights and activations, fp32
  BatchNorm); `--set precision=...` where that field exists.
- Keras's SGD folds the learning rate into its momentum buffer (PyTorch
  multiplies the buffer by the current rate), which differs only while the
  rate changes; and Keras's BatchNorm keeps the biased batch variance in its
  moving average (PyTorch the unbiased one: a factor 1023/1024).
- Data: where only ../shared/data's cifar10-jpeg.tar.gz is at hand (no
  internet), the images went through JPEG compression at quality 75 with
  4:2:0 chroma subsampling. On that copy airbench's recipe itself, in plain
  PyTorch (benchmarks/native_airbench.py), reaches 90.8 %, as this port
  does (RESULTS.md). 94 % needs the official pixels: with
  cifar-10-python.tar.gz in the data folder, kbench reads them.
- Time: kbench times every epoch from fit's batches (data feed included, the
  per-epoch test excluded); airbench times with CUDA events, data on the
  GPU, and includes its final TTA evaluation. Compile time is shown apart
  (first epoch minus a steady one).
"""

from kbench.config import Experiment, PublishedResult, TrialConfig

AIRBENCH_LR = 11.5 * (1 - 0.85) / (2 - 0.85)  # 1.5: airbench's lr per 1024 examples, for a mean loss
AIRBENCH_WD = 0.0153 / 11.5  # 0.0013304: PyTorch SGD's (coupled) weight_decay, for a mean loss

EXPERIMENT = Experiment(
    description="airbench94 in Keras: time to 94 % CIFAR-10 test accuracy (whitening, lookahead, TTA)",
    base=TrialConfig(
        dataset="cifar10",
        model="airbench94",
        epochs=10,
        batch_size=1024,
        optimizer="sgd",
        learning_rate=AIRBENCH_LR,
        momentum=0.85,
        nesterov=True,
        weight_decay=AIRBENCH_WD,
        weight_decay_style="coupled",
        lr_schedule="triangle",
        lr_triangle=(0.2, 0.23, 0.07),
        label_smoothing=0.2,
        lookahead="airbench",
        augment="shift2_alternating_flip",
        tta="flip_translate",
        validation_split=0.0,
        test_every_epoch=True,
        drop_last_batch=True,
        monitor="test_accuracy",
    ),
    quick={"epochs": 1, "train_subset": 512, "test_subset": 256, "batch_size": 128, "widths": (16, 32, 32)},
    published=[PublishedResult({}, {"test_accuracy": 0.9401, "time_to_94_s": 3.83})],
    published_source="airbench94.py (KellerJordan/cifar10-airbench): mean of 1,000 runs, one A100; "
                     "3.09 s with torch.compile",
)
