"""``python -m gateway.loadgen URL ...``: the same as ``kafka-gateway loadgen URL ...``."""

import sys

from gateway.loadgen.cli import main

sys.exit(main())
