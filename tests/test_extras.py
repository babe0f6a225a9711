"""The extras cover what each documented script imports: ``pip install -e '.[bench]'`` then
``python benchmarks/bench_serving.py`` works, and so on for the examples."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# import name -> distribution, where they differ
DISTRIBUTIONS = {"grpc": "grpcio", "PIL": "pillow", "google": "protobuf", "yaml": "pyyaml"}
# importable without an install: the project itself and the examples' own modules
LOCAL = {"popef", "popef_dump", "tests", "mnist"}

# script -> the extra its documentation names
SCRIPTS = {
    **{str(p.relative_to(ROOT)): "bench" for p in sorted((ROOT / "benchmarks").glob("*.py"))},
    "examples/mnist/client.py": "images",
    "examples/mnist/evaluate.py": None,
    "examples/mnist/make_images.py": "images",
    "examples/mnist/train.py": None,
    "examples/mnist/mnist_torch.py": "torch",
}


# script -> extras that only an option needs, which the script names where it offers the option
# (e.g. bench_serving.py --ray: "needs popef[ray]")
OPTION_EXTRAS = {"benchmarks/bench_serving.py": ("ray",)}


def _requirements(extra: str | None) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    if extra is not None:
        lines += config["options.extras_require"][extra].splitlines()
    names = set()
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)", line.split(";")[0])
        if match:
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def _optional(node: ast.AST, parents: dict) -> bool:
    """An import inside ``try: ... except ImportError``: the script copes without it."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            return True
    return False


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if _optional(node, parents):
            continue
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in LOCAL and top != "__future__":
                names.add(DISTRIBUTIONS.get(top, top).lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("script, extra", sorted(SCRIPTS.items()))
def test_the_documented_extra_covers_every_import(script, extra):
    missing = third_party_imports(ROOT / script) - _requirements(extra)
    for option_extra in OPTION_EXTRAS.get(script, ()):
        assert f"popef[{option_extra}]" in (ROOT / script).read_text(encoding="utf-8")
        missing -= _requirements(option_extra)
    assert not missing, (
        f"{script} imports {sorted(missing)}, which pip install -e '.[{extra}]' does not install"
        if extra
        else f"{script} imports {sorted(missing)} beyond the core dependencies"
    )
