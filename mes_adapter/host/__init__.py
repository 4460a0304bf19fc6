"""The MES adapter's Sparkplug primary host and its plain-JSON UNS mirror.

Pure parts (no I/O, testable without a broker): :mod:`.session` (STATE lifecycle),
:mod:`.tracker` (births, seq, bdSeq, deaths, rebirth decisions), :mod:`.live_model` (the plant as
the host sees it, plus a change stream), :mod:`.mirror` (UNS topics, JSON, conflation). The
aiomqtt shell :class:`SparkplugHost` in :mod:`.mqtt_host` drives them.
"""

from .config import HostConfig
from .live_model import (
    Change,
    ChangeStream,
    DeviceChange,
    DeviceView,
    LiveModel,
    MetricChange,
    MetricState,
    NodeChange,
    NodeView,
    drain,
)
from .mqtt_host import GroupNotOwnedError, HostNotOnlineError, SparkplugHost
from .stats import HostStats
from .tracker import RebirthCause

__all__ = [
    "Change", "ChangeStream", "DeviceChange", "DeviceView", "GroupNotOwnedError", "HostConfig",
    "HostNotOnlineError", "HostStats",
    "LiveModel", "MetricChange", "MetricState", "NodeChange", "NodeView", "RebirthCause", "SparkplugHost",
    "drain",
]
