"""The architecture as the imports draw it: each package imports only those below it (none imports one
that imports it back), the wire package needs neither PyTorch nor NumPy, and the worker uses the
library only through its public names."""

import ast
import subprocess
import sys
from pathlib import Path

import invsr

REPO = Path(__file__).resolve().parent.parent
OURS = ("invsr", "invsr_wire", "invsr_ray", "invsr_worker", "invsr_cli", "invsr_gimp")
# What each part may import of ours and of the world besides the standard library.
ALLOWED = {
    "invsr_wire": ({"invsr_wire"}, {"zmq"}),
    "invsr": ({"invsr", "invsr_wire"}, None),
    "invsr_ray": ({"invsr", "invsr_wire", "invsr_ray"}, None),  # the tile engine's parts, on a Ray cluster
    "invsr_worker": ({"invsr", "invsr_wire", "invsr_ray", "invsr_worker"}, None),
    "invsr_cli": (set(OURS), None),
    "invsr_gimp": ({"invsr_plugin", "invsr_wire"}, {"gi", "zmq"}),  # the plug-in: GIMP's Python runs it
}


def imports_of(folder: Path) -> list[tuple[Path, ast.AST]]:
    """Every import statement in the folder's Python files, absolute ones only (relative ones stay inside)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
                found.append((path, node))
    return found


def top_names(node) -> list[str]:
    names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
    return [name.split(".")[0] for name in names]


def test_each_package_imports_only_what_lies_below_it():
    for part, (ours_allowed, world_allowed) in ALLOWED.items():
        folder = REPO / part
        for path, node in imports_of(folder):
            for name in top_names(node):
                where = f"{path.relative_to(REPO)}:{node.lineno} imports {name}"
                if name in OURS or name == "invsr_plugin":
                    assert name in ours_allowed, where
                elif world_allowed is not None:
                    assert name in sys.stdlib_module_names or name in world_allowed, where


def test_the_worker_uses_only_the_librarys_public_names():
    for path, node in imports_of(REPO / "invsr_worker"):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "invsr":
            assert node.module == "invsr", f"{path.name}:{node.lineno} reaches into {node.module}"
            for alias in node.names:
                assert alias.name in invsr.__all__ or alias.name == "__version__", f"{alias.name} is not public"


def test_the_wire_package_imports_with_torch_and_numpy_unimportable():
    """What the plug-in runs inside GIMP's Python, where neither can be assumed."""
    script = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "invsr"):
            raise ImportError(f"{name} is not available here")

sys.meta_path.insert(0, Refuse())
import invsr_wire
for module in pkgutil.iter_modules(invsr_wire.__path__):
    importlib.import_module(f"invsr_wire.{module.name}")
print("imported", len(list(pkgutil.iter_modules(invsr_wire.__path__))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["imported", str(len(list((REPO / "invsr_wire").glob("[!_]*.py"))))]
