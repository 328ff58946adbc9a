"""The package's layers: only the engine module talks to the session's machinery; the core never imports pyspark."""
import ast
import os
import re

import sparkdl_lite

PKG = os.path.dirname(sparkdl_lite.__file__)
SESSION_MACHINERY = re.compile(r"sparkContext|_jvm\b|_jsc\b|_jsparkSession|\.rdd\b|SparkContext")
ENGINE = os.path.join("runner", "engine.py")


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
        if rel == ENGINE:
            continue
        found = sorted(set(SESSION_MACHINERY.findall(_code_only(text))))
        if found:
            offenders[rel] = found
    assert offenders == {}
    assert SESSION_MACHINERY.search(open(os.path.join(PKG, ENGINE)).read())  # the scan can find them


def test_core_modules_do_not_import_pyspark():
    names = sorted(n for n in os.listdir(os.path.join(PKG, "core")) if n.endswith(".py"))
    assert "training.py" in names and "jsonable.py" in names
    for name in names:
        tree = ast.parse(open(os.path.join(PKG, "core", name)).read())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "pyspark" not in imported, name


def _private_uses(text):
    """Private names of sparkdl_lite modules that ``text`` imports or reads off an imported module."""
    tree = ast.parse(text)
    found, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparkdl_lite"):
            for alias in node.names:
                if alias.name.startswith("_") and alias.name != "__version__":
                    found.add(f"{node.module}.{alias.name}")
                else:
                    modules.add(alias.asname or alias.name)  # maybe a module (from sparkdl_lite.core import training)
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name.startswith("sparkdl_lite")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.add(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    offenders = {rel: sorted(found) for rel, text in _sources() if (found := _private_uses(text))}
    assert offenders == {}
    assert _private_uses("from sparkdl_lite.core.keras_model import _walk\nfrom sparkdl_lite import engine\nengine._x()") \
        == {"sparkdl_lite.core.keras_model._walk", "engine._x"}  # the scan can find them
