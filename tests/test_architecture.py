"""The layers of ARCHITECTURE.md, enforced: every import in src/attnlab (module level or inside
a function) points down or sideways, never up, and no two modules import each other through a
chain (a cycle). Imports under `if TYPE_CHECKING:` are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower rows never import higher ones; a row may import itself and every row below it.
# Keep in step with ARCHITECTURE.md ("Layers").
LAYERS: list[set[str]] = [
    {"version", "errors", "registry", "serialization"},  # shared basement
    {"nn", "tokenizers", "data"},  # blocks that know no family; text <-> ids; corpora
    {"io", "generation"},  # the folder owner; decoding loops over a model protocol
    {"models"},  # one file per family + presets + the model_type table
    {"(root)", "interop"},  # `attnlab.from_pretrained`; old names kept for one release
    {"evaluation", "viz"},  # metrics, machine info; attention maps and pictures
    {"training"},  # Trainer, the one run routine, device, precision, checkpoints
    {"tasks"},  # one recipe per training job: settings, data, loss and metrics
    {"studies", "serve"},  # measured comparisons built on tasks; the HTTP server
    {"cli", "__main__"},  # the `attnlab` command
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, src: Path, package: str) -> set[str]:
    """Modules of `package` that the file at `path` imports (a `from pkg import name` whose
    name is a submodule counts as importing that submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    me = module_name(path, src)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            submodules = {m for m in submodules if _is_module(src, m)}
            # `from pkg import sub` imports the submodule; a name defined in pkg imports pkg
            found.update(submodules if len(submodules) == len(node.names) else {target})
            found.update(submodules)
    return {m for m in found if m == package or m.startswith(package + ".")}


def _is_module(src: Path, module: str) -> bool:
    path = src.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph(src: Path, package: str = "attnlab") -> dict[str, set[str]]:
    return {module_name(p, src): imports_of(p, src, package)
            for p in sorted((src / package).rglob("*.py"))}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b` for every import of a higher layer (or of a part no layer names)."""
    found = []
    for source, targets in graph.items():
        for target in sorted(targets):
            low, high = part_of(source), part_of(target)
            if low not in RANK or high not in RANK:
                found.append(f"{source} -> {target}: {low if low not in RANK else high!r} is "
                             "in no layer; add it to LAYERS and ARCHITECTURE.md")
            elif RANK[high] > RANK[low]:
                found.append(f"{source} ({low}) -> {target} ({high}): imports a higher layer")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_import_points_down_the_layers():
    assert wrong_way_imports(import_graph(SRC)) == []


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(SRC)) == []


def test_every_package_has_a_layer():
    parts = {part_of(module_name(p, SRC)) for p in (SRC / "attnlab").rglob("*.py")}
    assert parts <= set(RANK), f"packages in no layer: {sorted(parts - set(RANK))}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "attnlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("statement", [
    "from attnlab.training.trainer import Trainer",  # module level
    "def f():\n    from attnlab.cli import main",  # a late import is still an arrow
    "from attnlab import training",  # the submodule named in a from-import
])
def test_a_planted_wrong_way_import_is_found(tmp_path, statement):
    src = _tree(tmp_path, {"__init__.py": "", "models/__init__.py": "",
                           "models/gpt.py": statement + "\n", "training/__init__.py": "",
                           "training/trainer.py": "Trainer = 1\n", "cli/__init__.py": "",
                           "cli/main.py": ""})
    found = wrong_way_imports(import_graph(src))
    assert found and all(f.startswith("attnlab.models.gpt (models) -> attnlab.") for f in found)
    assert any(f.endswith("imports a higher layer") for f in found)


def test_type_checking_imports_and_downward_arrows_pass(tmp_path):
    src = _tree(tmp_path, {"__init__.py": "", "models/__init__.py": "",
                           "models/gpt.py": "from typing import TYPE_CHECKING\n"
                                            "from attnlab.nn import block\n"
                                            "if TYPE_CHECKING:\n"
                                            "    from attnlab.cli import main\n",
                           "nn/__init__.py": "", "nn/block.py": "", "cli/__init__.py": "",
                           "cli/main.py": ""})
    assert wrong_way_imports(import_graph(src)) == []


def test_a_planted_cycle_is_found(tmp_path):
    src = _tree(tmp_path, {"__init__.py": "", "nn/__init__.py": "",
                           "nn/a.py": "from attnlab.nn import b\n",
                           "nn/b.py": "def f():\n    from attnlab.nn.c import x\n",
                           "nn/c.py": "import attnlab.nn.a\nx = 1\n"})
    assert cycles(import_graph(src)) == [["attnlab.nn.a", "attnlab.nn.b", "attnlab.nn.c"]]
