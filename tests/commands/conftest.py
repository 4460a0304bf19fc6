"""Shared fixtures: an allowlist of one packaging line, two users with keys, a signing helper."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from uns.commands.allowlist import Allowlist
from uns.commands.checker import AllowlistChecker, build_request
from uns.commands.model import CommandRequest, SignatureMeaning
from uns.commands.signing import RegisteredUser, UserRegistry, generate_private_key, public_key_text, sign_command

GROUP = "acme:dublin"
EDGE = "packaging:line1"
T0 = 1_760_000_000_000

ALLOWLIST_YAML = """\
version: "2025-01-15.1"
lines:
  - group_id: "acme:dublin"
    edge_node_id: "packaging:line1"
    state:
      device_id: filler
      metric: Status/StateCurrent
      names: packml
    metrics:
      - device_id: filler
        metric: Filler/SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        step: 0.5
        rate_limit: {max_writes: 2, per_s: 60}
        allowed_states: [Idle, Execute, Held]
        tolerance: 0.01
        write: {node_id: "ns=2;s=Filler.SpeedSP"}
      - device_id: filler
        metric: Filler/TempSetpoint
        datatype: Float
        min: -10
        max: 90
        write: {node_id: "ns=2;s=Filler.TempSP"}
      - device_id: filler
        metric: Filler/Count
        datatype: Int32
        write: {node_id: "ns=2;s=Filler.Count"}
      - device_id: filler
        metric: Recipe/Select
        datatype: String
        enum: [SKU-12, SKU-14]
        allowed_states: [Idle, Stopped]
        critical: true
        second_signature_window_s: 600
        validity_s: 3600
        write: {node_id: "ns=2;s=Filler.Recipe", readback_node_id: "ns=2;s=Filler.RecipeActive"}
      - metric: Batch/Start
        critical: true
        call:
          object_node_id: "ns=2;s=Line1"
          method_node_id: "ns=2;s=Line1.StartBatch"
          args:
            - {name: order, datatype: String}
            - {name: product, datatype: String, enum: [SKU-12, SKU-14]}
            - {name: quantity, datatype: Int32, min: 1, max: 100000}
"""


class Users:
    """alice and bob (and carol, not registered) with their keys."""

    def __init__(self) -> None:
        self.keys: dict[str, Ed25519PrivateKey] = {name: generate_private_key() for name in ("alice", "bob", "carol")}
        self.names = {"alice": "Alice Archer", "bob": "Bob Baker", "carol": "Carol Cole"}
        self.registry = UserRegistry(users={
            name: RegisteredUser(full_name=self.names[name], public_key=public_key_text(self.keys[name].public_key()))
            for name in ("alice", "bob")
        })

    def sign(self, request: CommandRequest, user: str, meaning: SignatureMeaning = SignatureMeaning.AUTHORED,
             at: int = T0) -> CommandRequest:
        signature = sign_command(request, self.keys[user], user_id=user, full_name=self.names[user],
                                 meaning=meaning, now_ms=at)
        return request.with_signature(signature)


@pytest.fixture(scope="session")
def users() -> Users:
    return Users()


@pytest.fixture
def allowlist() -> Allowlist:
    return Allowlist.from_yaml(ALLOWLIST_YAML, "allowlist.yaml")


@pytest.fixture
def checker(allowlist: Allowlist, users: Users) -> AllowlistChecker:
    return AllowlistChecker(allowlist, users.registry)


MakeRequest = Callable[..., CommandRequest]


@pytest.fixture
def make(allowlist: Allowlist, users: Users) -> MakeRequest:
    """``make(metric, value, device="filler", sign_as="alice")``: a built, signed request at T0."""

    def build(metric: str, value: Any, *, device: str | None = "filler", requested_by: str = "alice",
              sign_as: tuple[str, ...] = ("alice",), at: int = T0,
              command_id: uuid.UUID | None = None) -> CommandRequest:
        request = build_request(allowlist, group_id=GROUP, edge_node_id=EDGE, device_id=device, metric=metric,
                                value=value, requested_by=requested_by, reason="test change", now_ms=at,
                                command_id=command_id)
        for user in sign_as:
            meaning = SignatureMeaning.AUTHORED if user == requested_by else SignatureMeaning.APPROVED
            request = users.sign(request, user, meaning, at)
        return request

    return build
