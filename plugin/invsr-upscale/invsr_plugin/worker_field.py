"""The dialog's Worker field and the line up front that says what that worker is.

The procedure keeps one "server" string (scripts and Filters > Repeat pass a path; empty: the local
worker). The dialog shows it as a choice, the local worker or a worker's connection file, with a file
chooser for the second. Each change re-checks the worker in a background thread (worker_status.line
waits on the network; the dialog must not freeze); the answer comes back to GTK's thread by
GLib.idle_add, and only the latest check's answer is shown.
"""

from __future__ import annotations

import threading

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

from . import worker_status  # noqa: E402
from .flow import load_settings  # noqa: E402

LINE = "worker-line"  # the aux argument the line shows (procedure.define)
LOCAL, CHOSEN_FILE = "local", "file"


class WorkerField:
    """Packs the Worker widgets into `box` (the Advanced section) and keeps "server" and the line current.
    Call `line_label(dialog)` before the dialog is filled, and `close()` once it has run."""

    def __init__(self, config, box: Gtk.Box):
        self.config = config
        self.settings = load_settings()
        self.checks = 0  # the number of the latest check: an older one's answer is stale
        self.closed = False
        self.setting = False  # while the widgets set "server", or "server" sets the widgets: no echo
        self.choice = Gtk.ComboBoxText()
        self.choice.append(LOCAL, "This computer (the local worker)")
        self.choice.append(CHOSEN_FILE, "Another computer or worker (its connection file)")
        self.chooser = _file_chooser()
        self._show_server(config.get_property("server"))
        box.pack_start(_row("_Where it runs", self.choice), False, False, 0)
        self.choice.set_tooltip_text("The worker: the program that upscales, on this computer's GPU or another's")
        box.pack_start(_row("Connection file", self.chooser), False, False, 0)
        box.show_all()
        self.choice.connect("changed", self._changed)
        self.chooser.connect("file-set", self._changed)
        # the dialog's Reset, and Load Saved Settings, set "server" itself: the widgets follow
        self.watch = config.connect("notify::server", self._server_set)
        self.check()

    @staticmethod
    def line_label(dialog) -> Gtk.Label:
        """The line up front, following the aux argument LINE (list it among the fields to fill)."""
        label = dialog.get_label(LINE, "", False, False)
        label.set_xalign(0.0)
        label.set_line_wrap(True)
        return label

    def _show_server(self, server: str) -> None:
        self.setting = True
        try:
            if server:
                self.chooser.set_filename(server)
            self.choice.set_active_id(CHOSEN_FILE if server else LOCAL)
            self.chooser.set_sensitive(bool(server))
        finally:
            self.setting = False

    def _server_set(self, *_):
        if not self.setting:
            self._show_server(self.config.get_property("server"))
            self.check()

    def _changed(self, *_):
        if self.setting:
            return
        chosen = self.choice.get_active_id() == CHOSEN_FILE
        self.chooser.set_sensitive(chosen)
        path = self.chooser.get_filename() if chosen else None
        self.setting = True
        try:  # no file chosen yet: the local worker, as the line says
            self.config.set_property("server", path or "")
        finally:
            self.setting = False
        self.check(no_file=chosen and not path)

    def check(self, no_file: bool = False) -> None:
        """Find out, in the background, what the worker of "server" is; say "checking" meanwhile."""
        self.checks += 1
        if no_file:
            self.config.set_property(LINE, worker_status.NO_FILE_CHOSEN)
            return
        self.config.set_property(LINE, worker_status.CHECKING)
        server = self.config.get_property("server")
        threading.Thread(target=self._ask, args=(self.checks, server), daemon=True).start()

    def _ask(self, number: int, server: str) -> None:
        """In the background thread: its own socket, used and closed here."""
        said = worker_status.line(server, self.settings)
        GLib.idle_add(self._show, number, said)

    def _show(self, number: int, said: str) -> bool:
        if number == self.checks and not self.closed:  # GTK's thread: no race with `check`
            self.config.set_property(LINE, said)
        return GLib.SOURCE_REMOVE

    def close(self) -> None:
        """The dialog has closed: a check still under way is no longer shown."""
        self.closed = True
        self.config.disconnect(self.watch)


def _file_chooser() -> Gtk.FileChooserButton:
    chooser = Gtk.FileChooserButton(title="Choose a worker's connection file", action=Gtk.FileChooserAction.OPEN)
    json_files = Gtk.FileFilter()
    json_files.set_name("Worker connection files (*.json)")
    json_files.add_pattern("*.json")
    chooser.add_filter(json_files)
    return chooser


def _row(text: str, widget: Gtk.Widget) -> Gtk.Box:
    label = Gtk.Label.new_with_mnemonic(text) if "_" in text else Gtk.Label.new(text)
    label.set_mnemonic_widget(widget)
    label.set_xalign(0.0)
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.pack_start(label, False, False, 0)
    row.pack_start(widget, True, True, 0)
    return row
