"""``benchmarks/gpu_check.sh --smoke`` on the CPU: every step of the GPU check runs and writes its JSON.

The GPU run itself (a lent H100 / H200) records its figures in ``benchmarks/RESULTS.md``; this test
keeps the script working between such runs, so a session that is lent a device can run it at once.
"""
import json
import os
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_on_cpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = {row["step"]: row for row in _lines(out / "steps.jsonl")}
    expected = {"env", "throughput_train", "throughput_integrated_gradient", "throughput_occlusion",
                "many_models_1", "many_models_2", "many_models_host_2", "ig_snli", "grid"}
    assert set(steps) == expected
    failed = {name: row["status"] for name, row in steps.items() if row["status"] != "ok"}
    assert not failed, (failed, {name: (out / f"{name}.log").read_text()[-1500:] for name in failed})
    assert all(row["smoke"] for row in steps.values())

    assert json.loads((out / "env.json").read_text())["backend"] == "cpu"
    throughput = _lines(out / "throughput.jsonl")
    jax_figures = {row["figure"] for row in throughput if row["framework"] == "jax"}
    assert jax_figures == {"train", "integrated_gradient", "occlusion"}
    assert all(row["examples_per_s"] > 0 for row in throughput if "examples_per_s" in row)
    rows = _lines(out / "many_models.jsonl")
    models = {row["models"]: row for row in rows if row["figure"] == "train_stacked"}
    assert set(models) == {1, 2} and all(row["examples_per_s_per_model"] > 0 for row in models.values())
    (host,) = [row for row in rows if row["figure"] == "train_stacked_host"]
    assert host["models"] == 2 and host["examples_per_s_per_model"] > 0
    (ig,) = _lines(out / "ig_snli.jsonl")
    assert ig["pairs"] == 200 and ig["finite"] and ig["pairs_per_s"] > 0
    results = os.listdir(out / "grid" / "results")
    assert len([name for name in results if name.endswith(".json")]) == 1 + 3  # base + 3 measures at k = 50
