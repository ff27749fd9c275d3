import pytest

from kbench.config import Overrides, TrialConfig, parse_value, resolve_trials
from kbench.errors import KbenchError
from kbench.experiments import load_experiment


def test_cifar_grid_expands_to_the_twelve_published_points():
    plan = resolve_trials(load_experiment("cifar_grid"), Overrides())
    assert len(plan.trials) == 12
    assert plan.grid_keys == ["activation", "batch_size", "optimizer"]
    points = {(t.model_options["activation"], t.batch_size, t.optimizer) for t in plan.trials}
    assert ("sigmoid", 64, "sgd") in points and len(points) == 12
    assert all(t.epochs == 10 and t.validation_split == 0.2 for t in plan.trials)


def test_grid_override_replaces_an_axis_and_set_fixes_a_setting():
    overrides = Overrides(sets=["epochs=3", "learning_rate=0.01"], grids=["batch_size=64,128", "activation=relu"])
    plan = resolve_trials(load_experiment("cifar_grid"), overrides)
    assert len(plan.trials) == 4
    assert {t.batch_size for t in plan.trials} == {64, 128}
    assert all(t.epochs == 3 and t.learning_rate == 0.01 for t in plan.trials)
    assert all(t.model_options == {"activation": "relu"} for t in plan.trials)


def test_set_replaces_a_grid_axis_of_the_same_name():
    plan = resolve_trials(load_experiment("cifar_grid"), Overrides(sets=["optimizer=adam"]))
    assert len(plan.trials) == 6 and {t.optimizer for t in plan.trials} == {"adam"}


def test_quick_mode_shrinks_data_and_epochs():
    plan = resolve_trials(load_experiment("quickstart"), Overrides(quick=True))
    assert all(t.epochs == 1 and t.train_subset == 400 for t in plan.trials)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (Overrides(grids=["colour=red,blue"]), "unknown key 'colour'"),
        (Overrides(sets=["epochs=many"]), "epochs='many': expected int"),
        (Overrides(sets=["epochs"]), "expected KEY=VALUE"),
        (Overrides(sets=["=3"]), "expected KEY=VALUE"),
        (Overrides(sets=["optimizer=nope"]), "optimizer='nope' is not a Keras optimizer"),
        (Overrides(sets=["model=resnet9000"]), "unknown model 'resnet9000'; known: a1"),
        (Overrides(sets=["dataset=imagenet22k"]), "dataset='imagenet22k' is unknown"),
        (Overrides(sets=["batch_size=0"]), "batch_size=0 must be at least 1"),
        (Overrides(sets=["validation_split=1.5"]), "validation_split=1.5"),
        (Overrides(sets=["jit_compile=maybe"]), "jit_compile='maybe'"),
        (Overrides(grids=["activation=relu,foo"]), "activation='foo' is not a Keras activation; e.g. relu"),
        (Overrides(sets=["learning_rate=-1"]), "learning_rate=-1.0 must be greater than 0"),
        (Overrides(sets=["lr_decay_epochs=0"]), "lr_decay_epochs=0 must be at least 1"),
        (Overrides(sets=["optimizer=adam", "momentum=0.9"]), "momentum=0.9 does not apply to optimizer=adam"),
        (Overrides(sets=["image_size=16", "model=a3"]), "image_size=16 does not fit model a3"),
        (Overrides(sets=["loss=nope"]), "loss='nope' is not a Keras loss; one of binary_crossentropy"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key_named(overrides, message):
    with pytest.raises(KbenchError, match=message.replace("(", r"\(")):
        resolve_trials(load_experiment("cifar_grid"), overrides)


@pytest.mark.parametrize(
    "text, annotation, expected",
    [("3", int, 3), ("0.5", float, 0.5), ("none", float | None, None), ("1e-3", float | None, 1e-3),
     ("true", bool, True), ("off", bool, False), ("accuracy+auc", tuple[str, ...], ("accuracy", "auc"))],
)
def test_parse_value(text, annotation, expected):
    assert parse_value(text, annotation) == expected


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(KbenchError, match="unknown experiment 'nope'.*quickstart"):
        load_experiment("nope")


def test_user_experiment_file_is_loaded_by_path(write_experiment):
    path = write_experiment(
        "mine",
        """
        EXPERIMENT = Experiment(
            description="my digits study",
            base=TrialConfig(dataset="digits", model="a1", epochs=2),
            grid={"activation": ["relu", "tanh"]},
        )
        """,
    )
    experiment = load_experiment(str(path))
    assert experiment.name == "mine"
    assert [t.model_options["activation"] for t in resolve_trials(experiment, Overrides()).trials] == ["relu", "tanh"]


def test_experiment_file_without_experiment_is_an_error(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(KbenchError, match="defines no EXPERIMENT"):
        load_experiment(str(path))


def test_base_model_options_reach_every_model_that_takes_them():
    from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials

    experiment = Experiment(
        description="s2",
        base=TrialConfig(dataset="cifar10", model="resnet18", model_options={"small_input": True}),
        grid={"model": ["resnet18", "efficientnet_b0", "a1"]},
    )
    options = {t.model: t.model_options for t in resolve_trials(experiment, Overrides()).trials}
    assert options == {"resnet18": {"small_input": True}, "efficientnet_b0": {"small_input": True}, "a1": {}}
