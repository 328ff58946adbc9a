"""Print the functions of a package longer than N lines, counting every line but the docstring.

    .venv/bin/python scripts/function_lengths.py sparkdl_lite 60
"""
import ast
import pathlib
import sys


def lengths(root: pathlib.Path):
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                doc = 0
                if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                        and isinstance(first.value.value, str):
                    doc = first.end_lineno - first.lineno + 1
                yield node.end_lineno - node.lineno + 1 - doc, f"{path}:{node.lineno} {node.name}"


if __name__ == "__main__":
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    for n, where in sorted(lengths(pathlib.Path(sys.argv[1])), reverse=True):
        if n > limit:
            print(n, where)
