"""The import rules of ``dslc`` (DESIGN.md, layout), checked on the source the way the DAG
integrity test checks parsing: every ``import`` statement of every module, at module level or
inside a function or ``TYPE_CHECKING`` block, since an import hidden in a function is still a
dependency.

* the root modules (``settings``, ``errors``, ``lake``, ``usecase``, ``notify``, ``reports``)
  import no stage;
* a stage imports only root modules and earlier stages: data < model < serving < monitoring <
  deploy; it reads its use case through :mod:`dslc.usecase`, never a ``dslc.usecases`` package;
* a use case package imports only root modules and ``dslc.usecases``;
* only ``dslc.dev`` imports typer or rich; no module imports Airflow but the preload launcher;
* no two modules import each other, directly or around a cycle (``TYPE_CHECKING`` imports,
  which never run, are exempt from this one rule only).

The negative controls at the bottom run the same checker on a small tree that breaks each rule.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "dslc"

ROOT_MODULES = (
    "dslc",
    "dslc.settings",
    "dslc.errors",
    "dslc.lake",
    "dslc.usecase",
    "dslc.notify",
    "dslc.reports",
)
STAGES = ("data", "model", "serving", "monitoring", "deploy")
AIRFLOW_ALLOWED = {"dslc.dev.preload"}
CLI_LIBRARIES = ("typer", "rich")


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                guarded.update(id(n) for n in ast.walk(stmt))
    return guarded


def imports_of(path: Path, name: str) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, type-only) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_only(tree)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        guarded = id(node) in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, guarded
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno, guarded
            # `from dslc.model import registry` imports the module dslc.model.registry
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno, guarded


def layer(module: str) -> str:
    """``root``, a stage name, ``usecases``, ``dev`` or ``other`` (not dslc)."""
    if module in ROOT_MODULES:
        return "root"
    parts = module.split(".")
    if parts[0] != "dslc":
        return "other"
    if len(parts) >= 2 and parts[1] in (*STAGES, "usecases", "dev"):
        return parts[1]
    return "root" if len(parts) == 2 else "other"


def _allowed(src: str, dst: str) -> bool:
    if src == "dev" or dst == "root":
        return True
    if src == "usecases":
        return dst == "usecases"
    if src in STAGES:
        return dst in STAGES and STAGES.index(dst) <= STAGES.index(src)
    return False  # root imports nothing but root


def known_modules(package: Path) -> set[str]:
    return {module_name(p, package) for p in package.rglob("*.py")}


def check(package: Path) -> list[str]:
    """Every rule violation in the package at ``package``, one line each."""
    problems: list[str] = []
    modules = known_modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in sorted(package.rglob("*.py")):
        src = module_name(path, package)
        where = f"{path.relative_to(package.parent)}"
        for imported, line, type_only in imports_of(path, src):
            top = imported.split(".")[0]
            if top == "airflow" and src not in AIRFLOW_ALLOWED:
                problems.append(f"{where}:{line}: imports Airflow ({imported})")
            if top in CLI_LIBRARIES and layer(src) != "dev":
                problems.append(f"{where}:{line}: imports {top} outside dslc.dev")
            if imported not in modules:
                continue
            if imported != src and not type_only:  # a type-only import never runs
                graph[src].add(imported)
            s, d = layer(src), layer(imported)
            if not _allowed(s, d):
                problems.append(f"{where}:{line}: {s} module {src} imports {d} module {imported}")
    problems.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(graph))
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """A cycle of the import graph, if there is one (graphlib names one at a time)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return [list(reversed(e.args[1]))]
    return []


# -- the package ------------------------------------------------------------------------------


def test_every_module_belongs_to_a_layer() -> None:
    strays = [m for m in known_modules(PACKAGE) if layer(m) == "other"]
    assert not strays, f"modules outside root, the stages, usecases and dev: {strays}"


def test_dslc_follows_its_import_rules() -> None:
    problems = check(PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_map_in_the_package_docstring_names_every_package() -> None:
    import dslc

    doc = dslc.__doc__ or ""
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    missing = [p for p in packages if f"{p}/" not in doc]
    assert not missing, f"dslc/__init__.py's map does not name {missing}"
    roots = [m.rsplit(".", 1)[1] for m in ROOT_MODULES[1:]]
    assert all(f"``{r}``" in doc for r in roots), roots


# -- negative controls: the checker catches each kind of violation ---------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "dslc"
    for rel, body in {"__init__.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            init = package / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(body)
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "data/ingest.py": "def f():\n    from dslc.model import registry\n",
                "model/registry.py": "",
            },
            "data module dslc.data.ingest imports model module dslc.model.registry",
        ),
        (
            {
                "model/training.py": "from dslc.usecases.flights import datasets\n",
                "usecases/flights/datasets.py": "",
            },
            "model module dslc.model.training imports usecases module",
        ),
        (
            {"lake.py": "from dslc.data import ingest\n", "data/ingest.py": ""},
            "root module dslc.lake imports data module dslc.data.ingest",
        ),
        (
            {"usecases/x.py": "from dslc.serving import app\n", "serving/app.py": ""},
            "usecases module dslc.usecases.x imports serving module",
        ),
        ({"serving/app.py": "import typer\n"}, "imports typer outside dslc.dev"),
        ({"monitoring/report.py": "def f():\n    from rich import print\n"}, "rich outside"),
        ({"deploy/run.py": "from airflow.sdk import Connection\n"}, "imports Airflow"),
        (
            {
                "model/a.py": "from dslc.model import b\n",
                "model/b.py": "def f():\n    from . import a\n",
            },
            "dslc.model.a -> dslc.model.b",
        ),
    ],
)
def test_the_checker_catches(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = check(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_the_checker_accepts_what_the_rules_allow(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "settings.py": "",
            "usecase.py": "from dslc.settings import x\n",
            "data/ingest.py": "from dslc.settings import get_usecase\nfrom dslc import lake\n",
            "lake.py": "",
            "model/registry.py": "from dslc.data import ingest\n",
            "deploy/run.py": "from dslc.monitoring import monitor\nfrom dslc.model import spec\n",
            "monitoring/monitor.py": "from dslc.serving import predlog\n",
            "serving/predlog.py": "",
            "usecases/flights/__init__.py": "from dslc.usecases import tabular\n",
            "usecases/tabular.py": "",
            "dev/cli.py": "import typer\nfrom dslc.usecases import flights\nimport dslc.deploy\n",
            "dev/preload.py": "import airflow\n",
        },
    )
    assert check(package) == []
