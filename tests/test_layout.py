"""The package's layering: no module imports, directly or through others, a module that imports it back,
except autograd.py and ops.py (Tensor's operators are ops' Functions, as in DeZero).  Read from the source
(every import statement, also those inside functions), so a circle that Python would tolerate at run time
still fails here."""
import ast
import os

import skengine

ROOT = os.path.dirname(skengine.__file__)
ALLOWED = {frozenset({"skengine.autograd", "skengine.ops"})}


def modules():
    """{dotted name: path} of every module in the package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = "skengine." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


def imports(name, path, known):
    """The package's modules that module ``name`` imports (a package's __init__ only where what is
    imported from it is not a submodule)."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names} & set(known)
            out |= subs
            if base in known and len(subs) < len(node.names):
                out.add(base)
    return out - {name}


def circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_outside_autograd_and_ops():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert "skengine.ops" in graph["skengine.autograd"] and "skengine.autograd" in graph["skengine.ops"]
    assert [sorted(c) for c in circles(graph) if c not in ALLOWED] == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [frozenset("abc")]


def test_the_training_library_raises_no_systemexit():
    """skengine/training/ raises named errors (errors.py); only the commands (train.py, evaluate.py) exit."""
    folder = os.path.join(ROOT, "training")
    found = []
    for f in sorted(os.listdir(folder)):
        if f.endswith(".py"):
            for node in ast.walk(ast.parse(open(os.path.join(folder, f)).read())):
                if isinstance(node, ast.Name) and node.id == "SystemExit" or (
                        isinstance(node, ast.Attribute) and node.attr in ("exit", "_exit")
                        and isinstance(node.value, ast.Name) and node.value.id in ("sys", "os")):
                    found.append(f"{f}:{node.lineno}")
    assert found == []
