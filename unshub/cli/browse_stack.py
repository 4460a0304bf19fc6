"""The line placement and broker login of ``uns edge browse --stack``: taken from a stack folder.

Why: a browsed map that runs under ``uns up -c`` must log in as a broker user allowed to publish
for its Sparkplug ids, and wait for the adapter's STATE (``primary_host_id``); without them the
edge loops on "Not authorized" or never births. The stack's own ``plant.yaml`` (``uns init``) has
exactly these: its ``line`` (the ids the user ``edge`` is scoped to), its ``sparkplug`` section
(broker URL with that user's password, the adapter's host id) and its ``http`` port. The browsed
edge keeps its state beside the demo edge's (``edge-<map name>``), not in the same folder.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_node.opcua.browse import Placement, clean_name
from unshub.errors import HubError


class StackFolderError(HubError):
    """The ``--stack`` folder has no usable edge config to take the placement from."""


def stack_config_folder(folder: Path) -> Path:
    """``uns-data`` or ``uns-data/config``: the folder holding the stack's ``plant.yaml``."""
    return folder / "config" if (folder / "config" / "plant.yaml").is_file() else folder


def stack_placement(folder: Path, out: Path) -> Placement:
    """The placement of the stack in ``folder`` for a map written to ``out``."""
    from edge_node.config import load_edge_config

    config = stack_config_folder(folder)
    plant = config / "plant.yaml"
    if not plant.is_file():
        raise StackFolderError(f"{folder}: no plant.yaml here or in {folder / 'config'}; "
                               "write a stack with `uns init` (or `uns up`) first")
    edge = load_edge_config(plant)  # the same validation `uns up` runs: a broken stack is said so here
    data = yaml.safe_load(plant.read_text(encoding="utf-8"))
    stack_data = Path(data.get("data_dir", "data/edge"))
    stack_data = stack_data if stack_data.is_absolute() else (config / stack_data).resolve()
    extra: dict = {"data_dir": str(stack_data.parent / f"edge-{clean_name(out.stem)}")}
    for key in ("mapping", "http"):
        if key in data:
            extra[key] = data[key]
    group, node = edge.sparkplug_ids()
    return Placement(
        line=dict(data["line"]), sparkplug=dict(data.get("sparkplug") or {}), extra=extra,
        source=(f"Line, broker login and primary host from the stack in {config}: its broker user may "
                f"publish for {group}/{node} only. To place the line elsewhere, add a user for the new ids "
                "(uns broker passwd ... --role edge --group G --edge E) and put it in the broker URL."))
