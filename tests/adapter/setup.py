"""Files an adapter test needs: allowlist, signer keys and registry, tokens, adapter.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from uns.commands.signing import generate_private_key, registry_entry

from .edge import CELL, EDGE, GROUP, LINE

#: demo tokens per role (the same scheme `uns up` documents)
TOKENS = {"viewer": "test-viewer-token", "operator": "test-operator-token",
          "supervisor": "test-supervisor-token", "engineer": "test-engineer-token"}
USERS = {"viewer": ("vera", "Vera Viewer"), "operator": ("alice", "Alice Operator"),
         "supervisor": ("bob", "Bob Supervisor"), "engineer": ("erin", "Erin Engineer")}

ALLOWLIST = {
    "version": "test-1",
    "lines": [{
        "group_id": GROUP, "edge_node_id": EDGE,
        "state": {"metric": "State"},
        "metrics": [
            {"device_id": CELL, "metric": "SpeedSetpoint", "datatype": "Double", "min": 0, "max": 600,
             "allowed_states": ["Execute", "Idle"], "write": {"node_id": "ns=2;s=Filler.SpeedSP"}},
            {"device_id": CELL, "metric": "Recipe", "datatype": "String", "enum": ["SKU-12", "SKU-14"],
             "critical": True, "write": {"node_id": "ns=2;s=Filler.Recipe"}},
            {"device_id": CELL, "metric": "Faceplate", "member": "SpeedSetpoint", "datatype": "Double", "min": 0,
             "max": 600, "write": {"node_id": "ns=2;s=Filler.Faceplate"}},
        ],
    }],
}


@dataclass
class AdapterFiles:
    config: dict
    keys: dict[str, Ed25519PrivateKey]
    directory: Path


def write_files(tmp_path: Path, broker_url: str, http_port: int) -> AdapterFiles:
    directory = tmp_path / "adapter"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "allowlist.yaml").write_text(yaml.safe_dump(ALLOWLIST))
    keys = {role: generate_private_key() for role in ("operator", "supervisor")}
    users: dict[str, dict] = {}
    for role, key in keys.items():
        user_id, name = USERS[role]
        users.update(registry_entry(user_id, name, key.public_key())["users"])
    (directory / "signers.yaml").write_text(yaml.safe_dump({"users": users}))
    config = {
        "host": {"broker_url": broker_url, "host_id": "mes", "conflation_interval_ms": 0, "reconnect_min_s": 0.2},
        "http": {"host": "127.0.0.1", "port": http_port, "graceful_shutdown_s": 1},
        "data_dir": str(directory / "data"),
        "auth": {"tokens": [{"token": TOKENS[role], "user_id": USERS[role][0], "full_name": USERS[role][1],
                             "role": role} for role in TOKENS]},
        "mes": {"confirmation_grace_s": 0, "partial_interval_s": None,
                "lines": [{"line": LINE, "counters": [{"metric": "GoodCount", "role": "good"},
                                                      {"metric": "RejectCount", "role": "reject"}],
                           "state": {"metric": "State"}, "default_ideal_cycle_s": 1.0}]},
        "commands": {"allowlist": "allowlist.yaml", "signers": "signers.yaml"},
        "confirmations_every_s": 0.5,
    }
    (directory / "adapter.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return AdapterFiles(config, keys, directory)


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}
