"""A bastion `Session` served on this process's own stdin/stdout through `stdio_channel`.

Requests: echo -> {"params": params}; pid -> {"pid": the process id}. Anything else raises
MethodNotFound. It exits when the session closes (EOF on stdin).
"""

import asyncio
import os

from bastion.protocol.errors import MethodNotFound
from bastion.session.core import Session
from bastion.transport.stdio import stdio_channel


async def handle(request):
    if request.method == "echo":
        return {"params": request.params}
    if request.method == "pid":
        return {"pid": os.getpid()}
    raise MethodNotFound(f"no method {request.method}")


async def main():
    channel = await stdio_channel(max_message_size=4096)
    session = Session(channel, name="stdio-client", on_request=handle, max_message_size=4096)
    session.start()
    await session.wait_closed()
    await session.aclose()


if __name__ == "__main__":
    asyncio.run(main())
