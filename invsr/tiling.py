"""Moved to `invsr.tiles` (the tile engine). This name stays only for server/jobs.py's import of
DEFAULT_TILE, which another change owns: delete this file once it imports from invsr.tiles."""

from .tiles.grid import DEFAULT_TILE

__all__ = ["DEFAULT_TILE"]
