"""``python -m gateway``: the same as the ``kafka-gateway`` command."""

import sys

from gateway.cli import main

sys.exit(main())
