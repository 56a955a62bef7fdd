"""Each top-level package must import from this repository: `catalog`, `assets`, `evaluation` ... are generic
names that a site-packages distribution could shadow (and a shadowed `assets` breaks the Dagster location)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("catalog", "embedders", "recommenders", "evaluation", "serving", "assets", "pipelines")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_to_this_repository(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None, f"{name} is a namespace package, not this repository's package"
    location = Path(module.__file__).resolve()
    assert location == REPO_ROOT / name / "__init__.py", f"{name} imports from {location}, not {REPO_ROOT}"


def test_definitions_module_loads_the_asset_graph():
    from pipelines.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"tracks", "interactions", "embeddings_random", "embeddings_handcrafted", "report"} <= keys
    assert defs.resolve_job_def("experiment").name == "experiment"


# each package may import only the packages below it: no import cycle between packages
LAYERS = {"catalog": set(), "embedders": {"catalog"}, "evaluation": {"catalog"},
          "recommenders": {"catalog", "evaluation"},
          "serving": {"catalog", "embedders", "evaluation", "recommenders"},
          "assets": {"catalog", "embedders", "evaluation", "recommenders", "serving"},
          "pipelines": {"catalog", "embedders", "evaluation", "recommenders", "serving", "assets"}}


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package):
    import ast

    offending = []
    for path in sorted((REPO_ROOT / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package and top not in LAYERS[package]:
                    offending.append(f"{path.name}: {name}")
    assert offending == [], f"{package} imports a package above it: {offending}"
