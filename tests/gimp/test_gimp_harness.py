"""The GIMP test harness itself: a run killed before it unmounted must not break the next one."""

import os
import subprocess

import pytest
from gimp_harness import ROOTS, SUITES, GimpRunner


def test_a_mount_left_of_a_folder_since_made_again_is_replaced(tmp_path):
    root = ROOTS / SUITES["3.2"]
    if os.geteuid() != 0 or not root.is_dir():
        pytest.skip("needs root and a GIMP root (tests/gimp/build-root.sh)")
    source = tmp_path / "checkout"
    source.mkdir()
    target = root / source.relative_to("/")
    target.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)  # as a killed run leaves it
    source.rmdir()
    source.mkdir()  # the checkout deleted and cloned again
    (source / "marker").write_text("the new one")
    runner = GimpRunner("3.2", root)
    try:
        runner.share(source)
        assert (target / "marker").read_text() == "the new one"
    finally:
        runner.__exit__()
        subprocess.run(["umount", "-l", str(target)], check=False)  # the stale one, if the runner kept it
        target.rmdir()
