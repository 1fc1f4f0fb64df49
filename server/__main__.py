"""`python -m invsr_server ...` is the `invsr` command (the GIMP plug-in starts the worker this way)."""

import sys

from .cli.commands import main

sys.exit(main())
