"""What a line made: every value as a record (:mod:`.records`), cumulative PLC counters turned into
increments (:mod:`.counters`) and stored per source time (:mod:`.quantities`), and the entry point
that feeds the host's changes into both (:mod:`.ingest`)."""
