#!/usr/bin/env bash
# The GPU check of issue 16, in one shot: about 8 minutes on one H100 / H200, JSON under $OUT.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine (after benchmarks/gpu_prepare.py here)
#   bash benchmarks/gpu_check.sh --smoke    # tiny sizes, on a CPU, in a minute or two (tests/test_gpu_check.py)
#
# Steps (each under its own time limit, each logged to $OUT/<step>.log; one failing never stops the
# others; $OUT/steps.jsonl says which passed and how long each took):
#   env          devices and versions                                       -> env.json
#   throughput   JAX vs PyTorch (cuDNN) + Captum: training and the measures,
#                batch 32, lengths 50 and 250, interleaved                  -> throughput.jsonl
#   many_models  vmapped training of 1, 8, 32, 128 models at once (examples/s per model), batches
#                gathered on the GPU; and 128 with batches built on the host -> many_models.jsonl
#   ig_snli      integrated gradients (50 steps) over 570k SNLI-shaped pairs -> ig_snli.jsonl
#   grid         a short SST ROAR grid through the sweep (base + 3 measures x k 10, 50, 90)
#                                                                           -> grid/ (results, summary)
# The GPU image has jax, flax, optax, orbax, torch and Python, but not ml-collections (its wheel and
# PyYAML's (and absl-py's) are carried under $CARRY/wheels and put on PYTHONPATH), nor the GloVe package (the SST
# grid reads $CARRY/sst_glove50.npz, GloVe 6B 50d rows of SST's vocabulary), nor the data ($CARRY/data).
# benchmarks/gpu_prepare.py fills $CARRY (default .gpu_carry) on a machine with the full install.
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
OUT=${OUT:-$(mktemp -d -t gpu-check-XXXX)}
CARRY=${CARRY:-.gpu_carry}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for pair in ml_collections:ml_collections yaml:pyyaml absl:absl_py; do  # carried wheels, only where missing
  if ! "$PY" -c "import ${pair%%:*}" 2>/dev/null; then
    for wheel in "$CARRY"/wheels/"${pair#*:}"-*.whl; do [[ -e "$wheel" ]] && PYTHONPATH="$PYTHONPATH:$PWD/$wheel"; done
  fi
done
export NLPROAR_PROGRESS=off
HAS_TORCH=0
"$PY" -c "import torch, captum" 2>/dev/null && HAS_TORCH=1
TORCH_DEVICE=cpu
[[ $HAS_TORCH == 1 ]] && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null && TORCH_DEVICE=cuda

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 start status
  shift 2
  start=$(date +%s%N)
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="failed rc=$?"; fi
  printf '{"step": "%s", "status": "%s", "milliseconds": %d, "smoke": %s}\n' "$name" "$status" \
    "$(( ($(date +%s%N) - start) / 1000000 ))" "$([[ $SMOKE == 1 ]] && echo true || echo false)" >> "$OUT/steps.jsonl"
  tail -n 2 "$OUT/$name.log"
}

step env 60 "$PY" -c "
import json, platform, jax
info = {'jax': jax.__version__, 'devices': [str(d) for d in jax.devices()], 'backend': jax.default_backend(),
        'python': platform.python_version(), 'hostname': platform.node(), 'torch_device': '$TORCH_DEVICE'}
try:
    import torch; info['torch'] = torch.__version__; info['cuda'] = torch.version.cuda
    info['cudnn'] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
except ImportError:
    pass
json.dump(info, open('$OUT/env.json', 'w')); print(info)"

TORCH_ARGS=()
[[ $HAS_TORCH == 1 ]] && TORCH_ARGS=(--torch --torch-device "$TORCH_DEVICE")
if [[ $SMOKE == 1 ]]; then
  SIZE=(--batch 4 --length 12 --vocab 200 --embedding 16 --hidden 8 --repeats 1 --min-time 0 --malloc-hugetlb 0
        --samples-lime 8 --ig-steps 4)
  FIGURES=(train integrated_gradient occlusion)
  MODELS=(1 2); MM=(--train-size 64 --max-length 10 --embedding 16 --hidden 8 --repeats 1)
  IG=(--pairs 200 --warmup 200 --batch 16 --smoke)
  GRID_CONFIG=configs/synthetic.py
  GRID=(--config.dataset.train_size=120 --config.dataset.val_size=40 --config.dataset.test_size=40
        --config.max_epochs=1 --config.embedding_dim=8 --config.hidden_size=8 --config.grid.quantile_k='(50,)'
        --config.grid.classic_together=waves --config.seeds_together=vmap --config.device_data=true)
  # (the last line: what "auto" means on the GPU, so the smoke run takes the GPU's code path on the CPU)
else
  SIZE=(--batch 32 --length 50 250 --repeats 3 --min-time 1)
  FIGURES=(train gradient integrated_gradient occlusion)
  MODELS=(1 8 32 128); MM=(--train-size 8000 --max-length 50 --embedding 50 --hidden 128 --repeats 2)
  IG=(--pairs 570000 --warmup 5000 --batch 512)
  if [[ -d "$CARRY/data/sst" ]]; then
    GRID_CONFIG=configs/sst.py
    GRID=(--config.data_dir="$CARRY/data" --config.grid.quantile_k='(10,50,90)')
    [[ -f "$CARRY/sst_glove50.npz" ]] && GRID+=(--config.embedding="$CARRY/sst_glove50.npz")
  else  # no SST here: the synthetic task, same grid
    GRID_CONFIG=configs/synthetic.py; GRID=(--config.grid.quantile_k='(10,50,90)')
  fi
fi

for figure in "${FIGURES[@]}"; do  # one process per figure: a failing figure loses only itself
  step "throughput_$figure" "$([[ $SMOKE == 1 ]] && echo 120 || echo 40)" "$PY" benchmarks/throughput.py \
    "${SIZE[@]}" "${TORCH_ARGS[@]}" --figures "$figure" --out "$OUT/throughput.jsonl"
done
for n in "${MODELS[@]}"; do
  step "many_models_$n" "$([[ $SMOKE == 1 ]] && echo 120 || echo 35)" "$PY" benchmarks/multiseed.py \
    --models "$n" --ways stacked "${MM[@]}" --out "$OUT/many_models_$n.jsonl"
done
n=${MODELS[-1]}  # the largest stack again, its batches padded on the host and copied every step
step "many_models_host_$n" "$([[ $SMOKE == 1 ]] && echo 120 || echo 35)" "$PY" benchmarks/multiseed.py \
  --models "$n" --ways stacked_host "${MM[@]}" --out "$OUT/many_models_host_$n.jsonl"
step ig_snli "$([[ $SMOKE == 1 ]] && echo 120 || echo 100)" "$PY" benchmarks/ig_at_scale.py "${IG[@]}" \
  --out "$OUT/ig_snli.jsonl"
step grid "$([[ $SMOKE == 1 ]] && echo 240 || echo 150)" "$PY" -m nlproar_jax.sweep --config="$GRID_CONFIG" \
  --config.persistent_dir="$OUT/grid" --config.grid.seeds='(0,)' \
  --config.grid.measures='("random","attention","integrated_gradient")' --config.grid.recursive=False \
  --config.grid.random_quantile_k='()' --config.grid.count_k='()' "${GRID[@]}"
cat "$OUT"/many_models_*.jsonl > "$OUT/many_models.jsonl" 2>/dev/null
echo "results in $OUT"
cat "$OUT/steps.jsonl"
