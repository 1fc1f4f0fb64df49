"""Help in the plug-in's dialog, in GIMP with its user interface on a virtual screen: F1 and the Help
button open the plug-in's own page (help/en/index.html), not GIMP's "user manual is not installed".

Help is shown only by GIMP's interface (gimp-console ignores it). GIMP finds the help domain that the
plug-in registered (invsr-upscale.py), and its "help" plug-in maps the dialog's help id, through the
domain's gimp-help.xml for the user's languages and then English, to a page; with the help browser
preference at its default (the web browser: Debian's GIMP has no help browser of its own), GIMP's web
browser plug-in opens that page with the desktop's handler for HTML. Here that handler is a throw-away one
that writes down what it was given, so the test sees what a browser would open. Without the domain, GIMP
says instead "The GIMP user manual is not installed in your language" (issue 16).
"""

import json
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from gimp_harness import PLUGINS, REPO, VERSIONS, GimpRunner

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the GIMP harness uses a Linux chroot or Debian's GIMP")
SCENARIOS = REPO / "tests" / "gimp" / "scenarios.py"
PAGE = PLUGINS / "invsr-upscale" / "help" / "en" / "index.html"
BROWSER = "invsr-test-browser.desktop"


@pytest.fixture(scope="module", params=VERSIONS)
def gimp(request):
    runner = GimpRunner.find_or_build(request.param)
    if not runner.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    with runner:
        yield runner


@pytest.fixture
def workspace(gimp):
    folder = gimp.workspace()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def recording_browser(gimp, folder: Path) -> dict:
    """A desktop handler for web pages that writes each address it is asked to open, a line each, to
    folder/opened.txt. Returns the environment that makes it the default (XDG folders of its own)."""
    record = folder / "record-uri"
    record.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$(dirname "$0")/opened.txt"\n')
    record.chmod(0o755)
    applications = folder / "xdg-data" / "applications"
    applications.mkdir(parents=True)
    (applications / BROWSER).write_text(
        "[Desktop Entry]\nType=Application\nName=Address recorder\n"
        f"Exec={gimp.inside(record)} %u\nMimeType=text/html;x-scheme-handler/http;x-scheme-handler/https;\n"
    )
    (folder / "xdg-config").mkdir()
    handled = ("text/html", "x-scheme-handler/http", "x-scheme-handler/https")
    (folder / "xdg-config" / "mimeapps.list").write_text(
        "[Default Applications]\n" + "".join(f"{kind}={BROWSER}\n" for kind in handled)
    )
    return {
        "XDG_DATA_HOME": gimp.inside(folder / "xdg-data"),
        "XDG_CONFIG_HOME": gimp.inside(folder / "xdg-config"),
        "XDG_DATA_DIRS": "/usr/share",
    }


def open_dialog(gimp, workspace, tmp_path, steps, env=None, preferences=""):
    """Open the plug-in's dialog on a small image in GIMP with its interface, with the recording browser as
    the desktop's, and do `steps` there (tests/gimp/scenarios.py `answer`), the last of which closes it.
    Returns the run's folder, where opened.txt lists the pages opened, and the plug-in's status."""
    out = workspace / "help"
    out.mkdir()
    image = {"name": "help", "canvas": [24, 20], "layers": [{"name": "photo", "size": [24, 20], "sample": "u8"}]}
    plan = {
        "out": gimp.inside(out),
        "plugin": gimp.inside(PLUGINS / "invsr-upscale"),
        "screenshot": gimp.inside(REPO / "tests" / "gimp" / "screenshot.py"),
        "scenarios": [dict(image, dialog=steps)],
    }
    (out / "plan.json").write_text(json.dumps(plan))
    variables = {"INVSR_SCENARIOS": gimp.inside(out / "plan.json"), **recording_browser(gimp, out), **(env or {})}
    try:
        done = gimp.run_gui(SCENARIOS, out, variables, preferences=preferences)
        (out / "gimp-output.log").write_text(done.stdout + done.stderr)
    finally:
        kept = tmp_path / "screenshots"  # to look at: the dialog, and the screen after each press
        kept.mkdir()
        for picture in [*out.glob("*.png"), *out.glob("*.txt"), *out.glob("*.log")]:
            shutil.copy(picture, kept / picture.name)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["help"]
    assert "crash" not in results, results["crash"]
    return out, results["status"]


def opened_pages(record: Path) -> list[str]:
    """The pages the browser was asked to open, as paths (GIO hands a local file to the handler as its path)."""
    addresses = record.read_text().split() if record.exists() else []
    return [unquote(urlparse(address).path) if address.startswith("file:") else address for address in addresses]


def gimps_own_messages(windows: Path) -> list[str]:
    """The titles, among the windows listed in `windows`, of GIMP's messages and help questions."""
    titles = windows.read_text().splitlines()
    return [title for title in titles if re.search("manual|help browser|message", title, re.IGNORECASE)]


def test_f1_and_the_help_button_open_the_plugins_own_page(gimp, workspace, tmp_path):
    """For a user whose language has no page of its own (German here), F1 and then the Help button each open
    help/en/index.html, and GIMP shows no message of its own (no "user manual is missing", no missing help
    browser); the dialog stays open until closed."""
    opened, after_f1 = gimp.inside(workspace / "help" / "opened.txt"), gimp.inside(workspace / "help" / "f1.txt")
    steps = [["shot", "dialog"], ["press", "F1"], ["until", f"test -s {opened} && cp {opened} {after_f1}"]]
    steps += [["windows", "after-f1"], ["shot", "after-f1"]]
    steps += [["key", "alt+h"], ["until", f"test $(wc -l < {opened}) -ge 2"]]  # the Help button
    steps += [["windows", "after-help"], ["shot", "after-help"], ["key", "Escape"]]
    out, status = open_dialog(gimp, workspace, tmp_path, steps, {"LANGUAGE": "de_DE:de"})
    by_f1 = opened_pages(out / "f1.txt")
    assert by_f1 == [str(PAGE)], f"F1 opened {by_f1 or 'nothing'}"
    pages = opened_pages(out / "opened.txt")
    assert pages == [str(PAGE)] * 2, f"F1, then the Help button, opened {pages}"
    for seen in ("after-f1", "after-help"):
        assert "Upscale (InvSR)" in (out / f"{seen}.txt").read_text()  # the dialog is still there
        assert not gimps_own_messages(out / f"{seen}.txt")
    assert status == "cancel"  # Escape closed the dialog: asking for help did not end it
    assert "<h1>Filters &gt; Enhance &gt; Upscale (InvSR)</h1>" in PAGE.read_text()  # and the page is the plug-in's


def test_without_gimps_help_browser_its_use_web_browser_button_leads_to_the_page(gimp, workspace, tmp_path):
    """A user whose preferences ask for GIMP's own help browser, which Debian's GIMP lacks: F1 brings GIMP's
    "help browser is missing" question; its Use Web Browser button opens the page, and from then on the
    Help button opens it at once (README, "When it fails")."""
    opened = gimp.inside(workspace / "help" / "opened.txt")
    steps = [["press", "F1"], ["window", "^Help browser is missing$"], ["shot", "help-browser-missing"]]
    steps += [["key", "alt+w"], ["until", f"test -s {opened}"]]  # Use _Web Browser
    steps += [["window", "^Upscale [(]InvSR[)]$"], ["key", "alt+h"], ["until", f"test $(wc -l < {opened}) -ge 2"]]
    steps += [["windows", "after-help"], ["shot", "after-help"], ["key", "Escape"]]
    out, status = open_dialog(gimp, workspace, tmp_path, steps, preferences="(help-browser gimp)\n")
    assert (out / "help-browser-missing.png").exists()  # the question was there (else the steps stopped)
    assert opened_pages(out / "opened.txt") == [str(PAGE)] * 2
    assert not gimps_own_messages(out / "after-help.txt") and status == "cancel"
