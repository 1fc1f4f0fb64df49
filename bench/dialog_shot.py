"""The README's picture of the plug-in's dialog (docs/images/dialog.png), taken in a real GIMP: not a test.

    sudo .venv/bin/python bench/dialog_shot.py [--gimp 3.2] [--photo PNG] [--side 1024] [-o docs/images/dialog.png]

GIMP runs as the dialog tests run it (tests/gimp_harness.py: this machine's GIMP, or a Debian root that
tests/gimp/build-root.sh built, on a virtual screen), opens the photo (by default the bundled sample,
enlarged to SIDE x SIDE pixels, so that the dialog's Result line shows a photo's size; the pixels do not
show: the Preview stays off), and calls the plug-in interactively.
Once the dialog shows, GIMP's own Python saves the screen (tests/gimp/screenshot.py) and xdotool gives the
dialog's geometry, then presses Escape: nothing is upscaled, and no worker is started (the dialog's Worker
line says so). The picture is cropped to the dialog. Needs root where GIMP is a Debian root (chroot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gimp_harness import PLUGINS, GimpRunner  # noqa: E402
from PIL import Image  # noqa: E402

from invsr_gimp.install import start_command  # noqa: E402

WINDOW = "^Upscale [(]InvSR[)]$"
# Runs inside GIMP (python-fu-eval): the photo opened, the plug-in called as the menu calls it.
IN_GIMP = """
import json, os, subprocess
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
plan = json.loads(open(os.environ["INVSR_SHOT_PLAN"]).read())
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(plan["photo"]))
procedure = Gimp.get_pdb().lookup_procedure("python-fu-invsr-upscale")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", image.get_layers()[:1])
user = subprocess.Popen(["sh", "-c", plan["user"]])
procedure.run(config)
user.wait()
image.delete()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gimp", default="3.2", choices=["3.0", "3.2"])
    parser.add_argument("--photo", type=Path, default=REPO / "invsr" / "data" / "sample.png")
    parser.add_argument("--side", type=int, default=1024, help="the photo enlarged to this square size; 0: as it is")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "images" / "dialog.png")
    parser.add_argument("--wait", type=float, default=4.0, help="seconds for the dialog's Worker line to settle")
    args = parser.parse_args()
    with GimpRunner.find_or_build(args.gimp) as gimp:
        work = gimp.workspace()
        try:
            photo = Image.open(args.photo)
            if args.side:
                photo = photo.resize((args.side, args.side), Image.Resampling.LANCZOS)
            photo.save(work / "photo.png")
            (work / "run").mkdir()  # an empty runtime folder: no worker runs, the dialog says it will start one
            settings = {"start_command": start_command(), "python": sys.executable}
            (work / "invsr-settings.json").write_text(json.dumps(settings))
            (work / "in_gimp.py").write_text(IN_GIMP)
            screen, geometry = gimp.inside(work / "screen.png"), gimp.inside(work / "geometry.txt")
            shot = gimp.inside(REPO / "tests" / "gimp" / "screenshot.py")
            user = " && ".join(
                [
                    f"xdotool search --sync --name '{WINDOW}' >/dev/null",
                    f"sleep {args.wait}",
                    f"python3 {shot} {screen}",
                    f"xdotool search --name '{WINDOW}' getwindowgeometry --shell %1 > {geometry}",
                    f"xdotool search --name '{WINDOW}' windowfocus --sync %1 key Escape",
                ]
            )
            plan = {"photo": gimp.inside(work / "photo.png"), "user": user}
            (work / "plan.json").write_text(json.dumps(plan))
            env = {
                "INVSR_SHOT_PLAN": gimp.inside(work / "plan.json"),
                "INVSR_RUNTIME_DIR": gimp.inside(work / "run"),
                "INVSR_GIMP_SETTINGS": gimp.inside(work / "invsr-settings.json"),
            }
            done = gimp.run_batch(work / "in_gimp.py", work, env, plugin_path=PLUGINS, timeout=180, screen=True)
            if not (work / "geometry.txt").exists():
                sys.exit(f"no dialog was seen; GIMP said:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            box = dict(line.split("=") for line in (work / "geometry.txt").read_text().split())
            x, y, width, height = (int(box[key]) for key in ("X", "Y", "WIDTH", "HEIGHT"))
            args.output.parent.mkdir(parents=True, exist_ok=True)
            Image.open(work / "screen.png").crop((x, y, x + width, y + height)).save(args.output, optimize=True)
            print(f"{args.output}: {width} x {height} pixels, {args.output.stat().st_size // 1024} KB")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
