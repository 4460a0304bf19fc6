"""The adapter's REST API: one router module per resource, models in :mod:`.models`, auth in :mod:`.deps`."""
