"""PLAIN amqtt 0.12.1, unmodified: the control group for the "fails on plain amqtt" tests.

Run as ``python plain_amqtt_broker.py PORT``: one TCP listener on 127.0.0.1:PORT, anonymous
access, nothing of ours loaded. Stopped by SIGTERM from the test (by PID).
"""

from __future__ import annotations

import asyncio
import sys

from amqtt.broker import Broker


async def main(port: int) -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
