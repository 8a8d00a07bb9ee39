"""A server that dies at once: says why on stderr and exits with code 3."""

import sys

print("crashy: missing configuration, giving up", file=sys.stderr, flush=True)
sys.exit(3)
