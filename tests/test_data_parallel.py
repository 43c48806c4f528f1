"""Data parallelism: a 2-device mesh (fake CPU devices, in a fresh process) trains to the same result as 1 device,
for a single run and for a stack of two."""
import ast
import subprocess
import sys
import textwrap

import numpy as np

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
    train, val = data.splits["train"], data.splits["val"]
    [r] = fit(g, [p], [train], [val], [0], epochs=1, batch_size=16, monitor="auroc")
    other = nnx.split(build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=6,
                                  hidden_size=6, seed=1))[1]
    stacked = fit(g, [p, other], [train] * 2, [val] * 2, [0, 1], epochs=1, batch_size=16, monitor="auroc")
    print(repr([evaluate(g, x.best_params, data.splits["test"], 16)["loss"] for x in [r, *stacked]]))
""")


def run(devices: int) -> list[float]:
    """Test losses of a single run and of a stack of two, trained on ``devices`` devices."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(devices)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_two_devices_match_one():
    one, two = run(1), run(2)
    assert len(one) == len(two) == 3
    np.testing.assert_allclose(two, one, atol=1e-4)
