"""OEE: the ISO 22400-2 computation (:mod:`.compute`, pure), the shift calendar (:mod:`.shifts`),
and OEE per batch or shift from stored data (:mod:`.service`)."""
