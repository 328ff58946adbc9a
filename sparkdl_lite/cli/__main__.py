"""``python -m sparkdl_lite.cli``: the ``sparkdl-lite`` command."""
import sys

from sparkdl_lite.cli import main

sys.exit(main())
