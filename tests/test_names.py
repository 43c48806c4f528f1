"""The JAX-free vocabulary: measure options from a config string, measure tags in run ids."""
import pytest

from nlproar_jax.names import Experiment, measure_tag, parse_measure_options
from test_pipeline import load_config


def test_measure_options_for_the_runs_measure_or_per_measure():
    assert parse_measure_options("", "attention") == ()
    assert parse_measure_options("signed=True, precision='default'", "input_times_gradient") == (
        ("precision", "default"), ("signed", True))
    grid = "times-input-gradient:signed=True;gradient:fast_path=False,precision=highest;integrated-gradient:chunk_size=5"
    assert parse_measure_options(grid, "input_times_gradient") == (("signed", True),)  # the original's spelling
    assert parse_measure_options(grid, "gradient") == (("fast_path", False), ("precision", "highest"))
    assert parse_measure_options(grid, "integrated_gradient") == (("chunk_size", 5),)
    assert parse_measure_options(grid, "attention") == ()
    with pytest.raises(ValueError, match="name=value"):
        parse_measure_options("signed", "gradient")
    with pytest.raises(ValueError, match="unknown importance measure 'gradeint'"):
        parse_measure_options("gradeint:signed=True", "gradient")


def test_tags_and_ids_carry_the_options_that_change_the_scores():
    assert measure_tag("integrated_gradient", 50, "alpha_weighted") == "integrated_gradient-50a"
    assert measure_tag("integrated_gradient", 20, "textbook", (("chunk_size", 8), ("signed", True))) == \
        "integrated_gradient-20t-signed=True"
    c = load_config()
    c.k, c.importance_measure = 20, "input_times_gradient"
    c.measure_options = "input_times_gradient:signed=True,chunk_size=3;gradient:fast_path=False"
    exp = Experiment.from_config(c)
    assert exp.id == "synthetic_rnn_s-0_y-input_times_gradient-signed=True_rs-quantile_k-20_r-0"
    assert exp.fields()["measure_options"] == {"chunk_size": 3, "signed": True}
    assert exp.fields()["measure_tag"] == "input_times_gradient-signed=True"
    assert exp.reference().id == "synthetic_rnn_s-0"  # the base run has no measure
    c.importance_measure, c.measure_options = "integrated_gradient", "steps=20"
    with pytest.raises(ValueError, match="ig_steps"):
        Experiment.from_config(c)


def test_every_measure_is_registered_spelled_and_drawn():
    from nlproar_jax import importance
    from nlproar_jax.analysis import plots
    from nlproar_jax.names import LEARNED, MEASURE_ALIASES, MEASURES, MODEL_FREE, STOCHASTIC, canonical_measure

    assert set(importance.REGISTRY) == set(MEASURES)
    assert set(MODEL_FREE) | set(STOCHASTIC) | set(LEARNED) <= set(MEASURES)
    assert all(canonical_measure(alias) == name for alias, name in MEASURE_ALIASES.items())
    assert canonical_measure("leave-one-out") == "occlusion" and canonical_measure("expected_gradients") == "gradient_shap"
    for table in (plots.PRETTY, plots.COLORS, plots.MARKERS):
        assert set(table) == set(MEASURES)
    assert set(plots.ORDER) == set(MEASURES) and len(set(plots.COLORS.values())) == len(MEASURES)


def test_option_values_with_commas_and_the_command_that_makes_a_run():
    from nlproar_jax.roar.references import train_command

    text = "diffmask:stretch=(-0.2, 1.0),baseline=learned,epochs=5;lime:samples=50"
    assert parse_measure_options(text, "diff-mask") == (("baseline", "learned"), ("epochs", 5),
                                                        ("stretch", (-0.2, 1.0)))
    c = load_config()
    c.k, c.importance_measure, c.measure_options = 10, "diffmask", text
    exp = Experiment.from_config(c)
    assert exp.measure_tag == "diffmask-baseline=learned,epochs=5,stretch=(-0.2,1.0)"
    command = train_command(exp, "configs/synthetic.py")
    assert "--config.measure_options='baseline=learned,epochs=5,stretch=(-0.2,1.0)'" in command
    import shlex
    value = [a for a in shlex.split(command) if a.startswith("--config.measure_options=")][0].split("=", 1)[1]
    assert parse_measure_options(value, "diffmask") == exp.options  # the command recreates the same run
