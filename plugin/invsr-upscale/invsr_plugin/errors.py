"""The plug-in's own failure: what the user reads, as it is (the text says what happened and what to do)."""


class PluginError(Exception):
    """A failure to show the user as it is."""
