"""Fill the carry folder ``benchmarks/gpu_check.sh`` reads on the GPU machine (default ``.gpu_carry``).

  python benchmarks/gpu_prepare.py [--carry .gpu_carry] [--data-dir ../shared/data]

The GPU image has jax, flax, optax, orbax, torch and Python 3.12 but no ml-collections, no GloVe
package, no data, and nothing can be downloaded there. This writes, here (about 9 MB, under the
64 MiB a device call carries; ``.gpu_carry`` is git-ignored):

* ``wheels/``: ml-collections, PyYAML and absl-py wheels for Python 3.12 (``pip download``, from
  PyPI); the script puts each on ``PYTHONPATH`` when its module is missing (ml-collections and
  absl-py are pure Python; PyYAML falls back to its pure-Python parser when its C extension
  cannot load from a zip);
* ``data/sst/``: a copy of the SST files (when ``--data-dir`` has them);
* ``sst_glove50.npz``: the GloVe 6B 50d vectors of SST's vocabulary (``words``, ``vectors``), the
  same rows ``configs/sst.py``'s ``glove-6b-50d`` gives, as a vectors file ``--config.embedding``
  accepts.

Then, with a device: ``run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_carry"])``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", default=str(ROOT / ".gpu_carry"))
    p.add_argument("--data-dir", default=os.environ.get("NLPROAR_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--python-version", default="3.12")
    a = p.parse_args()
    carry = Path(a.carry)
    wheels = carry / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    import ml_collections  # the installed version, so both machines parse configs alike

    version = getattr(ml_collections, "__version__", None)
    spec = f"ml-collections=={version}" if version else "ml-collections"
    for package in (spec, "PyYAML", "absl-py"):
        subprocess.run([sys.executable, "-m", "pip", "download", package, "--no-deps", "--only-binary=:all:",
                        "--python-version", a.python_version, "--platform", "manylinux2014_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "-d", str(wheels)], check=True)

    sst = Path(a.data_dir) / "sst"
    if not sst.is_dir():
        print(f"no SST under {a.data_dir}: the GPU grid will run the synthetic task", file=sys.stderr)
        return 0
    shutil.copytree(sst, carry / "data" / "sst", dirs_exist_ok=True)

    import numpy as np

    from nlproar_jax.data.embeddings import load_vectors
    from nlproar_jax.roar.run import load_base_data

    config = _sst_config(a.data_dir)
    vocab = load_base_data(config).vocab
    words, vectors = load_vectors(config.embedding, keep=set(vocab.words))
    np.savez(carry / "sst_glove50.npz", words=np.asarray(words), vectors=np.asarray(vectors, np.float32))
    print(f"{carry}: {len(words)} of {len(vocab.words)} SST words have GloVe vectors")
    return 0


def _sst_config(data_dir: str):
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("sst_config", ROOT / "configs" / "sst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data_dir = data_dir
    config.persistent_dir = tempfile.mkdtemp(prefix="gpu-prepare-")
    return config


if __name__ == "__main__":
    sys.exit(main())
