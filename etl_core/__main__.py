"""``python -m etl_core``: see :mod:`etl_core.cli`."""

import sys

from etl_core.cli import main

sys.exit(main())
