"""Data parallelism: a 2-device mesh (fake CPU devices, in a fresh process) trains to the same result as 1 device."""
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    import numpy as np
    from flax import nnx
    from nlproar_jax.data.dataset import encode_task
    from nlproar_jax.data.synthetic import load
    from nlproar_jax.models import build_model
    from nlproar_jax.training.loop import DataParallel, evaluate, fit
    assert len(jax.devices()) == int(sys.argv[1])
    assert DataParallel(16).num_devices == int(sys.argv[1])
    data = encode_task(load(train_size=64, val_size=16, test_size=16, max_length=12))
    model = build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=6, hidden_size=6, seed=0)
    g, p = nnx.split(model)
    r = fit(g, p, data.splits["train"], data.splits["val"], seed=0, epochs=1, batch_size=16, monitor="auroc",
            no_decay=model.no_weight_decay)
    print(repr(evaluate(g, r.best_params, data.splits["test"], 16)["loss"]))
""")


def run(devices: int) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(devices)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def test_two_devices_match_one():
    one, two = run(1), run(2)
    assert abs(one - two) < 1e-4
