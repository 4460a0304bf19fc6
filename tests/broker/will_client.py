"""A paho client with a Will that a test freezes with SIGSTOP:
``python will_client.py URL CLIENT_ID WILL_TOPIC KEEPALIVE``.

Prints ``CONNECTED`` once the broker accepted it, then idles (paho sends PINGREQs) until killed.
"""

from __future__ import annotations

import sys
import threading

from uns.mqtt_url import paho_client, parse_broker_url


def main() -> None:
    url, client_id, will_topic, keepalive = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    parsed = parse_broker_url(url)
    client = paho_client(parsed, client_id=client_id)
    client.will_set(will_topic, b"will of " + client_id.encode(), qos=1)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect(parsed.host, parsed.port, keepalive=keepalive)
    client.loop_start()
    if not connected.wait(10):
        print("NOT CONNECTED", flush=True)
        sys.exit(1)
    print("CONNECTED", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
