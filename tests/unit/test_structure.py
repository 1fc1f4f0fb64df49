"""The architecture as the imports draw it: three code folders under three import names, each importing
only what lies below it (server/ over plugin/ over invsr/, no circle), the wire package and the plug-in
free of PyTorch and NumPy, the worker using the library only through its public names; and setup.cfg's
package list, which setuptools cannot find by itself under package_dir, naming every package there is."""

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import invsr

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"invsr": "invsr", "invsr_server": "server", "invsr_gimp": "plugin"}  # import name: folder
WIRE = REPO / "invsr" / "wire"
PLUGIN = REPO / "plugin" / "invsr-upscale"  # what GIMP's Python runs: its own modules and its copy of the wire
# What each part may import of ours, and of the world besides the standard library (None: anything).
ALLOWED = {
    WIRE: (set(), {"zmq"}),  # itself by relative imports only: it is copied into GIMP as `invsr_wire`
    REPO / "invsr": ({"invsr"}, None),
    REPO / "plugin": ({"invsr", "invsr_gimp"}, None),  # the installer, run in the user's environment
    PLUGIN: ({"invsr_plugin", "invsr_wire"}, {"gi", "zmq"}),
    REPO / "server": ({"invsr", "invsr_gimp", "invsr_server"}, None),
}
OURS = {*FOLDERS, "invsr_plugin", "invsr_wire"}


def imports_of(folder: Path, skip: Path | None = None) -> list[tuple[Path, ast.AST]]:
    """Every import statement in the folder's Python files (but `skip`'s), absolute ones only."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        if skip is not None and skip in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
                found.append((path, node))
    return found


def top_names(node) -> list[str]:
    names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
    return [name.split(".")[0] for name in names]


def test_the_top_level_holds_exactly_the_designed_code_folders():
    tracked = subprocess.run(["git", "ls-files", "-s"], capture_output=True, text=True, cwd=REPO, check=True)
    paths = [line.split("\t", 1)[1] for line in tracked.stdout.splitlines()]
    assert {path.split("/")[0] for path in paths if path.endswith(".py")} - {"tests", "bench"} == set(FOLDERS.values())
    links = [line for line in tracked.stdout.splitlines() if line.startswith("120000")]  # break on Windows
    assert not links and not [path for path in paths if path.endswith(".whl")]


def test_each_part_imports_only_what_lies_below_it():
    for folder, (ours_allowed, world_allowed) in ALLOWED.items():
        inner = {REPO / "invsr": WIRE, REPO / "plugin": PLUGIN}.get(folder)  # checked on their own
        for path, node in imports_of(folder, skip=inner):
            for name in top_names(node):
                where = f"{path.relative_to(REPO)}:{node.lineno} imports {name}"
                if name in OURS:
                    assert name in ours_allowed, where
                elif world_allowed is not None:
                    assert name in sys.stdlib_module_names or name in world_allowed, where


def test_the_worker_uses_only_the_librarys_public_names():
    for path, node in imports_of(REPO / "server" / "worker"):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "invsr" and node.module != "invsr.wire":
            assert node.module == "invsr" or node.module.startswith("invsr.wire."), f"{path.name}:{node.lineno}"
            for alias in node.names:
                assert node.module != "invsr" or alias.name in [*invsr.__all__, "__version__"], alias.name


def test_setup_cfg_lists_every_package_of_the_three_folders():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {
        ".".join((name, *init.parent.relative_to(REPO / folder).parts))
        for name, folder in FOLDERS.items()
        for init in (REPO / folder).rglob("__init__.py")
        if PLUGIN not in init.parents
    }
    assert listed == found


def test_each_package_ships_py_typed():
    """PEP 561: the annotations (the client's typed API among them) are for type checkers of the installed
    packages too; a subpackage is covered by its top package's marker."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    shipped = {name: value.replace(" ", "").split(",") for name, value in config["options.package_data"].items()}
    for name, folder in FOLDERS.items():
        assert (REPO / folder / "py.typed").is_file() and "py.typed" in shipped.get(name, []), name


def test_every_package_imports_and_the_plugins_files_are_found():
    """In this environment (`pip install -e .` in CI; the wheel's own test is tests/gimp/test_gimp_install.py)."""
    script = """
import importlib, sys
import invsr_gimp
for name in sys.argv[1:]:
    importlib.import_module(name)
print(sorted(path.name for path in invsr_gimp.PLUGIN_DIR.iterdir() if path.name != "__pycache__"))
"""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packages = config["options"]["packages"].split()
    done = subprocess.run([sys.executable, "-c", script, *packages], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['help', 'invsr-upscale.py', 'invsr_plugin']"


def test_the_installed_plugin_imports_with_torch_numpy_and_the_library_unimportable(tmp_path):
    """What GIMP's Python runs, as `invsr gimp install` lays it out: its modules and its copy of the wire
    import with nothing of ours or of PyTorch's world there; only `gi` (GIMP's) may be missing here."""
    from invsr_gimp.install import copy_plugin

    copy_plugin(tmp_path / "invsr-upscale")
    script = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "PIL", "invsr", "invsr_server", "invsr_gimp"):
            raise ImportError(f"{name} is not available here")

sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
imported = []
for package in ("invsr_wire", "invsr_plugin"):
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        try:
            importlib.import_module(f"{package}.{module.name}")
            imported.append(module.name)
        except ImportError as error:
            if error.name is None or error.name.split(".")[0] != "gi":
                raise
print(" ".join(imported))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "invsr-upscale")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.split()
    assert {path.stem for path in WIRE.glob("[!_]*.py")} <= set(imported) and "sizing" in imported
