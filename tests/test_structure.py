"""The package's shape, checked from outside: no import cycles (imports inside functions count) and
the JSON API and the review pages never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from triage.testing import REPO

PACKAGE = REPO / "triage"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every ``triage.*`` module and the ``triage.*`` modules it imports anywhere in its file."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from triage import registry` imports the module triage.registry
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "triage":
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_imports_inside_functions():
    graph = import_graph()
    assert "triage.cases" in graph["triage.api"] and "triage.cases" in graph["triage.review"]
    # triage.cli imports these only inside functions (cmd_predict, train_main)
    assert {"triage.registry", "triage.training", "triage.routing"} <= graph["triage.cli"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_api_and_review_pages_share_only_the_service():
    graph = import_graph()
    assert "triage.api" not in graph["triage.review"] and "triage.review" not in graph["triage.api"]
    assert "triage.review" not in graph["triage.cases"] and "triage.api" not in graph["triage.cases"]
    # the model does not call the router, and the router does not import the model
    assert "triage.routing" not in graph["triage.model"] and "triage.model" not in graph["triage.routing"]


def test_core_modules_do_not_import_the_web_framework():
    for name in ("text", "model", "routing", "cases", "auth", "errors", "prediction", "store", "registry"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"fastapi", "starlette", "uvicorn"}, name
