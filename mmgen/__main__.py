"""``python -m mmgen`` runs the ``mmgen`` command."""

import sys

from mmgen.cli.main import main

sys.exit(main())
