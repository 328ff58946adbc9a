"""The package's layers: only the engine module talks to the session's machinery; the core never imports pyspark."""
import ast
import os
import re

import sparkdl_lite

PKG = os.path.dirname(sparkdl_lite.__file__)
SESSION_MACHINERY = re.compile(r"sparkContext|_jvm\b|_jsc\b|_jsparkSession|\.rdd\b|SparkContext")
CORE = ("graph.py", "runtime.py", "training.py", "keras_model.py", "image.py", "datasets.py", "failpoint.py", "tfimport.py", "quiet.py")


def _sources():
    for root, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield os.path.relpath(path, PKG), open(path).read()


def _code_only(text):
    """The source without comments and docstrings (a docstring may name what the code must not use)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                first.value.value = ""
    return "\n".join(line.split("#", 1)[0] for line in ast.unparse(tree).splitlines())


def test_only_the_engine_touches_sparkcontext_py4j_or_rdds():
    offenders = {}
    for rel, text in _sources():
        if rel == "engine.py":
            continue
        found = sorted(set(SESSION_MACHINERY.findall(_code_only(text))))
        if found:
            offenders[rel] = found
    assert offenders == {}
    assert SESSION_MACHINERY.search(open(os.path.join(PKG, "engine.py")).read())  # the scan can find them


def test_core_modules_do_not_import_pyspark():
    for name in CORE:
        path = os.path.join(PKG, "core", name) if os.path.isdir(os.path.join(PKG, "core")) else os.path.join(PKG, name)
        if not os.path.exists(path):
            continue
        tree = ast.parse(open(path).read())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "pyspark" not in imported, name
