"""A child that resists the shutdown ladder in configurable ways.

Flags:
  --ignore-eof         keep running after stdin reaches EOF (otherwise exit 0 at EOF)
  --ignore-term        ignore SIGTERM
  --grandchild         start a grandchild (same process group) that sleeps for a minute
  --grandchild-ignores-term   the grandchild ignores SIGTERM

Once ready it prints one JSON line on stdout: {"pid": ..., "grandchild": pid or null}.
"""

import json
import os
import signal
import subprocess
import sys
import time

GRANDCHILD = """
import signal, sys, time
if sys.argv[1] == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def main():
    args = sys.argv[1:]
    if "--ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = None
    if "--grandchild" in args:
        ignores = "1" if "--grandchild-ignores-term" in args else "0"
        proc = subprocess.Popen(
            [sys.executable, "-c", GRANDCHILD, ignores],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        proc.stdout.readline()  # its SIGTERM disposition is in place
        grandchild = proc.pid
    sys.stdout.write(json.dumps({"pid": os.getpid(), "grandchild": grandchild}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until EOF
    if "--ignore-eof" in args:
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
