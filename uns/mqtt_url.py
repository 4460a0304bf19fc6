"""Broker URLs: one string that says how every uns component reaches its MQTT broker.

Every service takes a broker URL so the embedded broker can be swapped for Mosquitto, EMQX or
HiveMQ without code changes::

    mqtt://host:1883                      plain TCP (default port 1883)
    mqtts://host:8883                     TLS (default port 8883)
    ws://host:9001/mqtt                   MQTT over WebSocket (default port 9001, path /mqtt)
    wss://host:9443/mqtt                  MQTT over secure WebSocket (default port 9443)
    mqtt://user:p%40ss@host:1883          credentials; percent-encode reserved characters
    mqtts://host?cafile=/etc/uns/ca.pem   trust this CA (PEM) instead of the system store
    mqtts://host?insecure=true            skip certificate and host name checks (tests only!)

Use :func:`parse_broker_url` to get a :class:`BrokerURL`, then :meth:`BrokerURL.aiomqtt_kwargs`
for ``aiomqtt.Client(**kwargs)``, or :func:`paho_client` / :func:`configure_paho` for paho.
``str(url)`` never shows the password, so a URL can be logged safely.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from uns.errors import UnsError

if TYPE_CHECKING:
    import paho.mqtt.client as paho

Scheme = Literal["mqtt", "mqtts", "ws", "wss"]
DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883, "ws": 9001, "wss": 9443}
DEFAULT_WEBSOCKET_PATH = "/mqtt"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class BrokerURLError(UnsError, ValueError):
    """A broker URL that cannot be used; the message quotes the URL (password hidden) and says why."""


@dataclass(frozen=True, slots=True)
class BrokerURL:
    scheme: Scheme
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    websocket_path: str | None = None  # set for ws/wss only
    cafile: str | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def websocket(self) -> bool:
        return self.scheme in ("ws", "wss")

    @property
    def transport(self) -> Literal["tcp", "websockets"]:
        return "websockets" if self.websocket else "tcp"

    def __str__(self) -> str:
        return self.to_string(redact=True)

    def __repr__(self) -> str:
        return f"BrokerURL({self.to_string(redact=True)!r})"

    def to_string(self, *, redact: bool = False) -> str:
        """The URL back as text; ``redact`` replaces the password with ``***``."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + ("***" if redact else quote(self.password, safe=""))
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.websocket_path if self.websocket and self.websocket_path != DEFAULT_WEBSOCKET_PATH else ""
        query = []
        if self.cafile:
            query.append(f"cafile={quote(self.cafile)}")
        if self.insecure:
            query.append("insecure=true")
        return f"{self.scheme}://{auth}{host}:{self.port}{path or ''}" + ("?" + "&".join(query) if query else "")

    def with_credentials(self, username: str | None, password: str | None = None) -> BrokerURL:
        return replace(self, username=username, password=password)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for mqtts/wss (None for mqtt/ws)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def aiomqtt_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client(**url.aiomqtt_kwargs(identifier="x"))``."""
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "transport": self.transport,
        }
        if self.websocket:
            kwargs["websocket_path"] = self.websocket_path
        if self.tls:
            kwargs["tls_context"] = self.ssl_context()
            if self.insecure:
                kwargs["tls_insecure"] = True
        kwargs.update(extra)
        return kwargs


def parse_broker_url(text: str) -> BrokerURL:
    """Parse ``mqtt://``, ``mqtts://``, ``ws://`` or ``wss://`` URLs; raise :class:`BrokerURLError`."""
    if not isinstance(text, str) or not text.strip():
        raise BrokerURLError("broker URL is empty; expected e.g. mqtt://localhost:1883")
    text = text.strip()
    shown = _redact_raw(text)
    if "://" not in text:
        raise BrokerURLError(f"broker URL {shown!r} has no scheme; expected mqtt://, mqtts://, ws:// or wss://")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        hint = " (use mqtts:// for TLS)" if scheme in ("ssl", "tls", "mqtt+ssl") else ""
        raise BrokerURLError(f"broker URL {shown!r}: unknown scheme {parts.scheme!r}; "
                             f"expected mqtt, mqtts, ws or wss{hint}")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise BrokerURLError(f"broker URL {shown!r}: bad port ({exc})") from None
    if not host:
        raise BrokerURLError(f"broker URL {shown!r} has no host")
    if port == 0:
        raise BrokerURLError(f"broker URL {shown!r}: port must be 1-65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "" and password is not None:
        raise BrokerURLError(f"broker URL {shown!r} has a password but no user name")
    path = parts.path
    websocket_path: str | None = None
    if scheme in ("ws", "wss"):
        websocket_path = path or DEFAULT_WEBSOCKET_PATH
    elif path not in ("", "/"):
        raise BrokerURLError(f"broker URL {shown!r}: a path ({path!r}) only makes sense for ws:// or wss://")
    if parts.fragment:
        raise BrokerURLError(f"broker URL {shown!r}: fragments (#...) are not allowed")
    cafile, insecure = _tls_options(parts.query, shown, tls=scheme in ("mqtts", "wss"))
    return BrokerURL(scheme, host, port or DEFAULT_PORTS[scheme], username or None, password,  # type: ignore[arg-type]
                     websocket_path, cafile, insecure)


def _tls_options(query: str, shown: str, *, tls: bool) -> tuple[str | None, bool]:
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise BrokerURLError(f"broker URL {shown!r}: malformed query {query!r}") from None
    unknown = set(params) - {"cafile", "insecure"}
    if unknown:
        raise BrokerURLError(f"broker URL {shown!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                             "known: cafile, insecure")
    if params and not tls:
        raise BrokerURLError(f"broker URL {shown!r}: cafile/insecure need a TLS scheme (mqtts:// or wss://)")
    cafile = params.get("cafile", [None])[-1] or None
    raw = params.get("insecure", ["false"])[-1].lower()
    if raw not in _TRUE | _FALSE:
        raise BrokerURLError(f"broker URL {shown!r}: insecure={raw!r} must be true or false")
    return cafile, raw in _TRUE


def _redact_raw(text: str) -> str:
    """Hide the password of a URL we could not parse yet (for error messages)."""
    head, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    auth, _, tail = rest.partition("@")
    user = auth.split(":", 1)[0]
    return f"{head}://{user}:***@{tail}" if ":" in auth else text


def configure_paho(client: paho.Client, url: BrokerURL) -> tuple[str, int]:
    """Apply credentials, TLS and WebSocket options of ``url`` to a paho client.

    Returns ``(host, port)`` for ``client.connect(host, port)``. The client must have been created
    with the URL's transport (paho fixes it in the constructor); :func:`paho_client` does that.
    """
    transport = getattr(client, "_transport", url.transport)
    if transport != url.transport:
        raise BrokerURLError(f"paho client was created with transport={transport!r} but {url} needs "
                             f"transport={url.transport!r}; create it with paho_client(url)")
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set_context(url.ssl_context())
        if url.insecure:
            client.tls_insecure_set(True)
    if url.websocket:
        client.ws_set_options(path=url.websocket_path or DEFAULT_WEBSOCKET_PATH)
    return url.host, url.port


def paho_client(url: BrokerURL | str, client_id: str = "", **kwargs: Any) -> paho.Client:
    """A paho 2.x client (callback API v2) configured for ``url``; call ``connect(url.host, url.port)``."""
    import paho.mqtt.client as paho_mqtt

    parsed = parse_broker_url(url) if isinstance(url, str) else url
    client = paho_mqtt.Client(paho_mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                              transport=parsed.transport, **kwargs)
    configure_paho(client, parsed)
    return client
