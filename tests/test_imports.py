"""The bookkeeping layer (vocabulary, results, plots, report, grid plan, launcher) imports no JAX."""
import json
import subprocess
import sys

from conftest import REPO_ROOT

JAX_FREE = ("nlproar_jax.names", "nlproar_jax.results", "nlproar_jax.analysis.tables",
            "nlproar_jax.analysis.faithfulness", "nlproar_jax.analysis.report", "nlproar_jax.analysis.plots",
            "nlproar_jax.roar.plan", "launch.jobs", "launch.slurm", "launch.grid")
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax")


def test_bookkeeping_modules_import_no_jax():
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
            + "".join(f"import {m}\n" for m in JAX_FREE)
            + f"import json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], "imported by the bookkeeping layer"
