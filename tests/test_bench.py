import json

import pytest

from kbench.cli import main


def test_bench_reports_step_times_throughput_and_flops(capsys):
    code = main(["bench", "a1", "--image-size", "16", "--batch-size", "8", "--steps", "3", "--warmup", "1", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and row["model"] == "a1" and row["batch_size"] == 8
    for prefix in ("train", "infer"):
        assert 0 < row[f"{prefix}_step_time_ms"] <= row[f"{prefix}_step_p90_ms"]
        assert row[f"{prefix}_samples_per_sec"] == pytest.approx(8000 / row[f"{prefix}_step_time_ms"])
        assert row[f"{prefix}_gflops_per_s"] > 0
    # A1 at 16x16x3: conv 3x3x3x16 on 14x14, conv 3x3x16x32 on 5x5, dense 800x32, dense 32x10
    assert row["gmacs_per_image"] * 1e9 == pytest.approx(14 * 14 * 27 * 16 + 5 * 5 * 144 * 32 + 800 * 32 + 320)


def test_compile_time_counts_every_warm_up_call_beyond_a_steady_one(monkeypatch):
    """A step that compiles on its first call and recompiles on its second (torch.compile does, on Keras's
    step): both extra times are compile time, and the timed steps are the steady ones."""
    from kbench import bench

    extra = iter([5.0, 2.0])  # seconds the first two calls take beyond a steady 1.0
    clock = {"now": 0.0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])

    def step():
        clock["now"] += 1.0 + next(extra, 0.0)

    compile_s, times = bench.timed(step, steps=4, warmup=3)
    assert compile_s == pytest.approx(7.0) and times.tolist() == [1.0] * 4
    extra = iter([5.0, 2.0])
    compile_s, times = bench.timed(step, steps=4, warmup=1)  # too few warm-up calls: the recompile is timed
    assert compile_s == pytest.approx(5.0) and sorted(times.tolist()) == [1.0, 1.0, 1.0, 3.0]


def test_bench_reports_compile_time_mfu_and_feed_efficiency_separately(capsys):
    code = main(["bench", "a1", "--image-size", "16", "--batch-size", "8", "--steps", "3", "--warmup", "2",
                 "--precision", "mixed_bfloat16", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and row["precision"] == "mixed_bfloat16"
    assert row["train_compile_s"] > 0  # the first step traces: it is slower than a steady one
    assert row["feed_samples_per_sec"] > 0
    for feed in ("feed", "device_feed"):  # batches made on the host and copied; gathered on the device
        assert row[f"{feed}_efficiency"] == pytest.approx(row[f"{feed}_samples_per_sec"] / row["train_samples_per_sec"])
        assert row[f"{feed}_alone_samples_per_sec"] > 0
    if row["device"] == "cpu":  # on a GPU the MFU is measured against its peak (tests/test_peaks.py)
        assert row["train_mfu"] is None and row["mfu_basis"] == "n/a: a CPU"
    assert main(["bench", "a1", "--image-size", "16", "--batch-size", "8", "--steps", "1", "--warmup", "1",
                 "--no-feed", "--format", "json"]) == 0
    assert not [key for key in json.loads(capsys.readouterr().out)[0] if "feed" in key]


def test_bench_latency_follows_the_s2_protocol_on_a_750px_image(capsys):
    assert main(["bench", "a1", "--latency", "--repeats", "3", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["img_size"] == 750 and row["repeats"] == 3
    assert row["latency_mean_ms"] > 0 and row["latency_std_ms"] >= 0


def test_bench_rejects_unknown_models_and_bad_sizes(capsys):
    assert main(["bench", "resnet9000"]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err
    assert main(["bench", "a1", "--batch-size", "0"]) == 2
    assert "--batch-size 0: must be at least 1" in capsys.readouterr().err


def test_bench_takes_model_options(capsys):
    code = main(["bench", "a1", "--option", "activation=tanh", "--option", "data_format=channels_last",
                 "--image-size", "16", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--format", "json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and row["options"] == "activation=tanh, data_format=channels_last"
    assert main(["bench", "a1", "--option", "depth=3"]) == 2
    assert "model a1 has no option 'depth'; its options: activation, data_format" in capsys.readouterr().err
    assert main(["bench", "a1", "--option", "data_format=nchw"]) == 2
    assert "expected one of 'channels_last', 'channels_first' or none" in capsys.readouterr().err


def test_efficiency_table_measures_each_model_of_the_grid_beside_the_published_figures(capsys):
    from kbench.bench import efficiency
    from kbench.config import Experiment, PublishedResult, TrialConfig

    experiment = Experiment(
        description="e",
        base=TrialConfig(dataset="digits", model="resnet18", model_options={"small_input": True}),
        grid={"model": ["resnet18", "a1"], "learning_rate": [0.1, 0.01]},
        published=[PublishedResult({"model": "resnet18"}, {"gmacs_750": 81.62, "test_accuracy": 0.9})],
    )
    table = efficiency(experiment, repeats=2, image_size=32)
    assert table["model"].tolist() == ["resnet18", "a1"]  # one row per model, not per grid point
    resnet = table.iloc[0]
    assert resnet["options"] == "small_input=True"
    assert resnet["params_m"] == pytest.approx(11.173962)  # 3x3 stem: 7,680 fewer than torchvision's 11,181,642
    assert resnet["gmacs_32"] == pytest.approx(0.556, abs=0.01)
    assert resnet["published_gmacs_750"] == 81.62 and "published_test_accuracy" not in table
    assert (table["latency_mean_ms"] > 0).all() and (table["peak_memory_mb"] > 0).all()
