"""The house plan, checked: no module reaches into another's underscore names, imports point one way
(cli -> service -> surrogates -> datasets), no import cycles, each sub-package states its public names.

Library modules only (``hwsurrogate/``, ``datasets/``, ``surrogates/``, ``service/``, ``benchmarks/``);
tests may use private helpers of the code they test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> import name (pyproject's package-dir)
PACKAGES = {
    "hwsurrogate": "hwsurrogate",
    "datasets": "hwsurrogate.datasets",
    "surrogates": "hwsurrogate.surrogates",
    "service": "hwsurrogate.service",
    "benchmarks": "hwsurrogate.benchmarks",
}
#: layer of each sub-package: a module may import only from its own layer or lower ones
LAYERS = {
    "hwsurrogate.datasets": 1,
    "hwsurrogate.surrogates": 2,
    "hwsurrogate.service": 3,
    "hwsurrogate.benchmarks": 3,
    "hwsurrogate.cli": 4,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _library_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            # benchmarks/*.py scripts beside the package are run as files, not imported
            if folder == "benchmarks" and not (path.parent / "__init__.py").is_file():
                continue
            out[_module_name(path)] = path
    return out


MODULES = _library_files()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import of the file, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def _resolve(mod: str, names: list[str]) -> list[str]:
    """The project modules an import statement loads (a name may itself be a sub-module)."""
    targets = [mod] if mod in MODULES else []
    targets += [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
    return targets


def _layer(name: str) -> int | None:
    for prefix, layer in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def test_no_private_names_across_modules() -> None:
    bad = []
    for name, path in MODULES.items():
        for mod, names, line in _imports(name, path):
            if not mod.startswith("hwsurrogate") or mod == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            # a package-private module (``importers/_common.py``) serves its sibling modules only
            parent, _, leaf = mod.rpartition(".")
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            if leaf.startswith("_") and parent != package:
                private.append(f"(module {mod})")
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {private} from {mod}")
    assert not bad, "modules import other modules' private names:\n" + "\n".join(bad)


def test_imports_point_one_way() -> None:
    bad = []
    for name, path in MODULES.items():
        own = _layer(name)
        if own is None:
            continue
        for mod, names, line in _imports(name, path):
            for target in _resolve(mod, names) or [mod]:
                layer = _layer(target)
                if layer is not None and layer > own:
                    bad.append(f"{path.relative_to(ROOT)}:{line} ({name}) imports {target}")
    assert not bad, "imports against the layering cli -> service -> surrogates -> datasets:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        for mod, names, _ in _imports(name, path):
            for target in _resolve(mod, names):
                # a package's __init__ re-exporting its own sub-modules is not a cycle of ideas
                if target != name and not target.startswith(name + "."):
                    graph.add_edge(name, target)
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:20])


@pytest.mark.parametrize(
    "package",
    sorted(n for n, p in MODULES.items() if p.name == "__init__.py" and n != "hwsurrogate.benchmarks"),
)
def test_subpackages_state_their_public_names(package: str) -> None:
    tree = ast.parse(MODULES[package].read_text())
    exported = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(getattr(t, "id", None) == "__all__" for t in getattr(node, "targets", [getattr(node, "target", None)]))
    ]
    assert exported, f"{MODULES[package].relative_to(ROOT)} has no __all__"
