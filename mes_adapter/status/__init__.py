"""What the adapter reports about the lines and itself: data completeness (:mod:`.data_status`), the
retained ``_mes/status`` publisher (:mod:`.publisher`), the dashboard's live feed (:mod:`.live_feed`),
per edge node tallies (:mod:`.node_stats`) and Prometheus metrics (:mod:`.metrics`)."""
