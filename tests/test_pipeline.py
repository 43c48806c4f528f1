"""The ROAR chain end to end on a tiny synthetic task, plus config validation and the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from nlproar_jax.data.dataset import TaskData
from nlproar_jax.names import Experiment, Paths
from nlproar_jax.roar.run import MissingReferenceError, run_experiment
from nlproar_jax.data.tokens import MASK


def load_config(path="configs/synthetic.py"):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture
def tiny_config(tmp_path):
    c = load_config()
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 120, 40, 40
    c.embedding_dim = c.hidden_size = 6
    c.max_epochs = 1
    c.persistent_dir = str(tmp_path)
    c.ig_steps = 4
    return c


def with_(config, **kw):
    c = config.copy_and_resolve_references()
    for k, v in kw.items():
        c[k] = v
    return c


def mask_counts(path_or_data, split="test"):
    data = TaskData.load(path_or_data) if isinstance(path_or_data, str) else path_or_data
    main = data.splits[split].main
    return np.array([np.sum(main.row(i) == MASK) for i in range(len(main))])


def test_chain_base_classic_recursive(tiny_config):
    c = tiny_config
    paths = Paths(c.persistent_dir)
    with pytest.raises(MissingReferenceError, match="--config.k=0"):
        run_experiment(with_(c, k=10, importance_measure="gradient"))
    base = run_experiment(c)
    assert base["k"] == 0 and base["experiment_id"] == "synthetic_rnn_s-0"
    for metric in ("accuracy", "macro_f1", "auroc", "loss"):
        assert metric in base["test"] and metric in base["val"]
    assert {"device", "versions", "seconds", "history"} <= set(base)

    classic = run_experiment(with_(c, k=20, importance_measure="integrated-gradient"))
    assert classic["reference_id"] == "synthetic_rnn_s-0"
    assert os.path.exists(os.path.join(c.persistent_dir, classic["importance_file"]))

    # recursive: the second step needs the first; a missing step names the command that makes it
    with pytest.raises(MissingReferenceError, match="--config.k=10 .*--config.recursive=True"):
        run_experiment(with_(c, k=20, importance_measure="attention", recursive=True))
    first = run_experiment(with_(c, k=10, importance_measure="attention", recursive=True))
    second = run_experiment(with_(c, k=20, importance_measure="attention", recursive=True))
    assert second["reference_id"] == first["experiment_id"]
    e1 = Experiment.from_config(with_(c, k=10, importance_measure="attention", recursive=True))
    e2 = Experiment.from_config(with_(c, k=20, importance_measure="attention", recursive=True))
    m1, m2 = mask_counts(paths.masked_dataset(e1)), mask_counts(paths.masked_dataset(e2))
    assert np.all(m2 >= m1) and m2.sum() > m1.sum()
    d1, d2 = TaskData.load(paths.masked_dataset(e1)), TaskData.load(paths.masked_dataset(e2))
    for i in range(len(d1.splits["test"].main)):  # earlier masks are kept
        assert np.all(d2.splits["test"].main.row(i)[d1.splits["test"].main.row(i) == MASK] == MASK)

    # finished runs are skipped: same result, file untouched
    result_path = paths.result(e2)
    mtime = os.path.getmtime(result_path)
    assert run_experiment(with_(c, k=20, importance_measure="attention", recursive=True)) == second
    assert os.path.getmtime(result_path) == mtime


def test_changed_settings_in_the_same_run_directory_are_refused(tiny_config):
    run_experiment(tiny_config)
    os.remove(Paths(tiny_config.persistent_dir).result(Experiment.from_config(tiny_config)))
    with pytest.raises(ValueError, match="different settings.*hidden_size"):
        run_experiment(with_(tiny_config, hidden_size=7))
    # What does not change the run is no different setting: a larger grid resumes the same run.
    grown = with_(tiny_config, seeds_together="loop")
    grown.grid.seeds = (0, 1, 2, 3, 4, 5)
    assert run_experiment(grown)["experiment_id"] == "synthetic_rnn_s-0"


@pytest.mark.parametrize("field,value,message", [
    ("task", "sst2", "valid tasks"),
    ("importance_measure", "saliency", "valid:"),
    ("roar_strategy", "topk", "valid:"),
    ("k", 120, "out of range"),
    ("ig_variant", "left", "valid:"),
    ("batch_size", 0, "batch_size"),
])
def test_bad_values_fail_naming_the_valid_choices(tiny_config, field, value, message):
    with pytest.raises(ValueError, match=message):
        Experiment.from_config(with_(tiny_config, **{field: value}))


def test_recursive_k_must_be_reachable(tiny_config):
    with pytest.raises(ValueError, match="multiple of"):
        Experiment.from_config(with_(tiny_config, k=25, recursive=True))
    exp = Experiment.from_config(with_(tiny_config, k=3, roar_strategy="count", recursive=True,
                                       importance_measure="times-input-gradient"))
    assert exp.step == 1 and exp.reference().k == 2 and exp.measure == "input_times_gradient"


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "nlproar_jax.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_cli_overrides_and_errors(tmp_path):
    out = run_cli("--config=configs/synthetic.py", "--config.importance_measure=saliency", "--config.k=10",
                  f"--config.persistent_dir={tmp_path}")
    assert out.returncode != 0 and "saliency" in out.stderr and "integrated_gradient" in out.stderr
    out = run_cli("--config=configs/synthetic.py", "--config.no_such_field=1")
    assert out.returncode != 0 and "no_such_field" in out.stderr
    out = run_cli("--config=configs/synthetic.py", "--config.k=10", "--config.importance_measure=gradient",
                  f"--config.persistent_dir={tmp_path}")
    assert out.returncode == 2 and "python -m nlproar_jax.train --config=configs/synthetic.py" in out.stderr
    out = run_cli("--config=configs/synthetic.py", "--config.dataset.train_size=60", "--config.dataset.val_size=20",
                  "--config.dataset.test_size=20", "--config.max_epochs=1", "--config.hidden_size=4",
                  "--config.embedding_dim=4", "--config.seed=3", f"--config.persistent_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "results" / "synthetic_rnn_s-3.json") as f:
        result = json.load(f)
    assert result["seed"] == 3 and result["train_size"] == 60
    with open(tmp_path / "runs" / "synthetic_rnn_s-3" / "config.json") as f:
        assert json.load(f)["hidden_size"] == 4


@pytest.mark.parametrize("args,wanted", [
    (("--config=configs/synthetic.py", "--config.kk=3"), "unknown config field 'kk' (in --config.kk); did you mean 'k'?"),
    (("--config=configs/synthetic.py", "--config.grid.seedz=(1,)"), "did you mean 'seeds'?"),
    (("--config=configs/synthtic.py",), "config file 'configs/synthtic.py' not found; did you mean 'configs/synthetic.py'?"),
    (("--config=configs/sst.py", "--config.data_dir=/no/such/dir"), "set --config.data_dir=DIR or NLPROAR_DATA_DIR"),
    (("--config=configs/synthetic.py", "--config.k=10", "--config.importance_measure=lmie"), "did you mean 'lime'?"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, wanted):
    out = run_cli(*args, f"--config.persistent_dir={tmp_path}")
    assert out.returncode == 2, out.stderr
    assert wanted in out.stderr and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1, out.stderr


def test_a_run_that_fails_before_training_leaves_no_run_directory(tiny_config, tmp_path):
    """``runs/<id>/`` (config.json first) is written only once the data and model are ready, so a run that
    fails before it starts leaves nothing that says it started."""
    sst = load_config("configs/sst.py")
    sst.persistent_dir, sst.data_dir = str(tmp_path / "sst"), str(tmp_path / "nonexistent")
    with pytest.raises(FileNotFoundError, match="task .sst.*NLPROAR_DATA_DIR"):
        run_experiment(sst)
    assert not os.path.exists(Paths(sst.persistent_dir).run_dir(Experiment.from_config(sst)))

    c = tiny_config
    paths = Paths(c.persistent_dir)
    missing = with_(c, k=10, importance_measure="attention")
    with pytest.raises(MissingReferenceError):
        run_experiment(missing)
    assert not os.path.exists(paths.run_dir(Experiment.from_config(missing)))
    # Runs trained together: seed 0's reference exists, seed 1's does not; neither run is marked started.
    run_experiment(c)
    together = with_(missing, num_seeds=2, seeds_together="vmap")
    with pytest.raises(MissingReferenceError, match="synthetic_rnn_s-1"):
        run_experiment(together)
    for seed in (0, 1):
        assert not os.path.exists(paths.run_dir(Experiment.from_config(with_(missing, seed=seed))))
    # ... and the run starts normally once its reference exists.
    assert run_experiment(missing)["reference_id"] == "synthetic_rnn_s-0"
    with open(paths.config(Experiment.from_config(missing))) as f:
        assert json.load(f)["k"] == 10


def test_the_newer_measures_in_classic_and_recursive_roar(tiny_config):
    """A sampled perturbation measure with its options (in the run id), the learned one (fitted on the
    base model's training split) and a recursive chain, through the same pipeline."""
    c = with_(tiny_config, measure_options="lime:samples=32;diffmask:epochs=2,hidden=8")
    base = run_experiment(c)
    lime = run_experiment(with_(c, k=20, importance_measure="lime"))
    assert lime["experiment_id"] == "synthetic_rnn_s-0_y-lime-samples=32_rs-quantile_k-20_r-0"
    assert lime["measure_options"] == {"samples": 32} and lime["reference_id"] == base["experiment_id"]
    diffmask = run_experiment(with_(c, k=20, importance_measure="diff-mask"))
    assert diffmask["measure_tag"] == "diffmask-epochs=2,hidden=8"
    paths = Paths(c.persistent_dir)
    with np.load(os.path.join(c.persistent_dir, diffmask["importance_file"])) as scores:
        assert set(scores.files) == {"train", "val", "test"}
        assert np.all((scores["test"] >= 0) & (scores["test"] <= 1))  # expected gates
    first = run_experiment(with_(c, k=10, importance_measure="occlusion", recursive=True))
    second = run_experiment(with_(c, k=20, importance_measure="leave-one-out", recursive=True))
    assert second["reference_id"] == first["experiment_id"]
    e1, e2 = (Experiment.from_config(with_(c, k=k, importance_measure="occlusion", recursive=True)) for k in (10, 20))
    m1, m2 = mask_counts(paths.masked_dataset(e1)), mask_counts(paths.masked_dataset(e2))
    assert np.all(m2 >= m1) and m2.sum() > m1.sum()


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "nlproar_jax.train", "--config=configs/synthetic.py",
                             "--config.max_epochs=200", "--config.dataset.train_size=200", "--config.dataset.val_size=40",
                             "--config.dataset.test_size=40", f"--config.persistent_dir={tmp_path}"],
                            cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until training has finished an epoch, then interrupt it
        lines.append(line)
        if "epoch 2/200" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert "interrupted; rerun the same command to resume" in stderr and "Traceback" not in stderr


def test_first_recursive_step_reuses_its_classic_twin(tiny_config, tmp_path):
    """Recursive k = step trains exactly what classic k = step trains: with the classic run finished, the
    recursive one records its model and result (saying so) instead of training, and the chain goes on
    from it; trained anew instead, it gives the same numbers."""
    import shutil

    c = with_(tiny_config, max_epochs=2)
    run_experiment(c)
    classic = run_experiment(with_(c, k=10, importance_measure="gradient"))
    first = with_(c, k=10, importance_measure="gradient", recursive=True)
    reused = run_experiment(first)
    assert reused["same_as"] == classic["experiment_id"] and reused["recursive"] is True
    assert reused["experiment_id"].endswith("_r-1_st-10") and reused["test"] == classic["test"]
    assert reused["history"] == classic["history"]
    # the next step starts from the reused step's model and masked data
    second = run_experiment(with_(first, k=20))
    assert second["reference_id"] == reused["experiment_id"] and "same_as" not in second
    # the same step trained anew (the base model and importance copied to a fresh directory)
    other = tmp_path / "anew"
    shutil.copytree(c.persistent_dir, other, ignore=shutil.ignore_patterns("*_y-*"))
    fresh = run_experiment(with_(first, persistent_dir=str(other), reuse_classic_twin=False))
    def computed(history):  # every number but the wall times
        return [{k: v for k, v in e.items() if "seconds" not in k and "per_s" not in k} for e in history]

    assert "same_as" not in fresh and fresh["test"] == classic["test"] and fresh["val"] == classic["val"]
    assert computed(fresh["history"]) == computed(classic["history"])
