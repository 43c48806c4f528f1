"""The README's commands and API example are the ones that work."""
import contextlib
import io
import re

from conftest import REPO_ROOT


def readme():
    return (REPO_ROOT / "README.md").read_text()


def test_api_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", readme(), flags=re.S)
    assert blocks, "the README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    lines = out.getvalue().strip().splitlines()
    assert [line.split()[0] for line in lines] == ["random", "mutual_information", "attention", "gradient",
                                                    "input_times_gradient", "integrated_gradient"]


def test_install_and_test_commands_match_ci():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    text = readme()
    assert "pip install -r requirements.txt" in text and "pip install -r requirements.txt" in ci
    assert "python -m pytest -q" in text and "python -m pytest -q" in ci
