"""The Sparkplug 3.0 host STATE payload: JSON ``{"online": bool, "timestamp": int}``.

The timestamp must be a JSON integer (the TCK parses it as a long; ``1.7e12`` fails). The Will
and the birth of one connection share the CONNECT time; an explicit offline uses the current time.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError

from uns import json_guard

from .errors import MalformedPayloadError


class StatePayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    online: StrictBool
    timestamp: StrictInt

    def to_bytes(self) -> bytes:
        return json.dumps({"online": self.online, "timestamp": self.timestamp},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StatePayload:
        try:
            obj = json_guard.loads(data)
        except json_guard.JsonTooDeepError as exc:
            raise MalformedPayloadError(f"STATE payload: {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedPayloadError(f"STATE payload is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise MalformedPayloadError("STATE payload must be a JSON object")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise MalformedPayloadError(
                f"STATE payload field {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from exc
