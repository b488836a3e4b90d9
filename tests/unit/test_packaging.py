"""The repo is both a ComfyUI custom-node folder and the installed package ``comfyui_hdr``."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requirements_txt_equals_the_pyproject_runtime_dependencies():
    listed = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == _pyproject()["project"]["dependencies"]


def test_torch_is_never_pinned_in_the_package_metadata():
    for requirement in _pyproject()["project"]["dependencies"]:
        if re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0] == "torch":
            assert requirement == "torch", requirement


def test_every_python_folder_of_the_pack_is_a_listed_package():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"comfyui_hdr"}
    for init in REPO.glob("*/**/__init__.py"):
        relative = init.parent.relative_to(REPO)
        if relative.parts[0] in {"tests", ".venv", ".comfyui", "build"}:
            continue
        found.add(".".join(("comfyui_hdr", *relative.parts)))
    assert found == listed


def test_importing_the_package_does_not_import_comfyui():
    code = ("import sys, comfyui_hdr; "
            "bad = [m for m in ('comfy', 'folder_paths', 'nodes', 'server', 'comfy_api') "
            "if m in sys.modules]; print(len(comfyui_hdr.NODE_CLASS_MAPPINGS), bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/").stdout.split(maxsplit=1)
    assert int(out[0]) > 0
    assert out[1].strip() == "[]"


def test_no_module_of_the_pack_imports_a_top_level_nodes_or_comfyui_module_eagerly():
    """Only relative imports inside the pack; ComfyUI modules only inside functions."""
    comfy_modules = {"nodes", "comfy", "folder_paths", "server", "comfy_api", "comfy_extras"}
    for path in REPO.glob("**/*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in {"tests", ".venv", ".comfyui", "build", "scripts"}:
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are fine
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in comfy_modules | {"comfyui_hdr"}, (relative, name)


def test_readme_node_table_names_every_node_of_the_pack():
    import comfyui_hdr

    table = [line for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith("| ")]
    for name in comfyui_hdr.NODE_DISPLAY_NAME_MAPPINGS.values():
        assert any(name in line for line in table), f"{name} is not in the README's node table"
