"""Before the broker answers: /metrics and /healthz work, /readyz says why not; the example config loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from mes_adapter.api.app import build
from mes_adapter.auth import Role
from mes_adapter.config.application import load_adapter_config
from tests.support.net import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "mes_adapter" / "adapter.example.yaml"


async def test_metrics_and_health_before_the_host_is_online(tmp_path: Path) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text(f"host: {{broker_url: 'mqtt://127.0.0.1:{free_port()}', reconnect_min_s: 0.2}}\n"
                    f"data_dir: {tmp_path / 'data'}\n")
    app, service = build(load_adapter_config(path))
    try:
        await service.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapter") as client:
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and "uns_host_online 0.0" in metrics.text
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and "not online" in ready.json()["detail"]
            refused = await client.get("/api/nodes", headers={"Authorization": "Bearer whatever-token"})
            assert refused.status_code == 401
    finally:
        await service.stop()


def test_example_config_loads_with_a_demo_token_per_role(tmp_path: Path) -> None:
    copy = tmp_path / "adapter.yaml"
    shutil.copy(EXAMPLE, copy)
    config = load_adapter_config(copy)
    assert {entry.role for entry in config.auth.tokens} == set(Role)
    assert config.http.host == "127.0.0.1" and config.mes.data_dir == tmp_path / "data/adapter/mes"
    assert config.commands.allowlist == tmp_path / "allowlist.yaml"
