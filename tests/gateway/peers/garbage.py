"""Not an MCP server: writes lines that are not JSON to stdout and never answers.

It exits when its stdin closes (the first rung of the shutdown ladder), so tests stay fast.
"""

import sys

for line in ("hello, I am not an MCP server", "<html>oops</html>", "{not json"):
    print(line, flush=True)
sys.stdin.read()
