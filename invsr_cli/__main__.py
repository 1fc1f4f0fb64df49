"""`python -m invsr_cli ...` is the `invsr` command (the GIMP plug-in starts the worker this way)."""

import sys

from .commands import main

sys.exit(main())
