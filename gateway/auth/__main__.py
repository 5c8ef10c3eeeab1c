"""``python -m gateway.auth passwd NAME``: the same as ``kafka-gateway passwd NAME``."""

import sys

from gateway.auth.passwd import main

args = sys.argv[1:]
sys.exit(main(args[1:] if args[:1] == ["passwd"] else args))
