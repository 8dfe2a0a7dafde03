"""Re-run the examples of docs/RESULTS.md on a real results tree and write their output back.

    PYTHONPATH=src python docs/render_results.py          (from the checkout, after the quickstart)

Every ```python block runs, in order, in one namespace, as the cells of a notebook do: the value
of a block's last expression is printed (repr), else what it prints. A ```bash block runs its
first command (no shell). The plain ``` block right after a block is replaced by that output;
a block without one is left as it is. The paths are the ones the page names (the quickstart's
folder, results/quickstart, and a second run for the diff), relative to the working directory.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).with_name("RESULTS.md")
NO_FENCE = r"((?:(?!```).)*)"  # a block's body: anything up to its closing fence
BLOCK = re.compile(rf"```(python|bash)\n{NO_FENCE}```\n```\n{NO_FENCE}```\n", re.S)


def run_python(code: str, namespace: dict) -> str:
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(tree, "<RESULTS.md>", "exec"), namespace)  # noqa: S102 - the page's own examples
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<RESULTS.md>", "eval"), namespace)  # noqa: S307
            if value is not None:
                print(repr(value))
    return out.getvalue()


def run_bash(code: str) -> str:
    command = shlex.split(code.splitlines()[0].split("#")[0])
    proc = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=600)
    return proc.stdout


def render(text: str) -> str:
    namespace: dict = {}
    # as a notebook shows them: every column (a script's pandas would elide them to fit a terminal)
    exec("import pandas\npandas.set_option('display.max_columns', None)", namespace)  # noqa: S102

    def replace(match: re.Match) -> str:
        kind, code = match.group(1), match.group(2)
        output = run_python(code, namespace) if kind == "python" else run_bash(code)
        return f"```{kind}\n{code}```\n```\n{output.rstrip()}\n```\n"

    return BLOCK.sub(replace, text)


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote {PAGE}")
