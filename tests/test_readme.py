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
