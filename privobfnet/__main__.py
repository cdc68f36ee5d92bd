"""``python -m privobfnet``: the ``privobfnet`` command."""

import sys

from privobfnet.cli import main

sys.exit(main())
