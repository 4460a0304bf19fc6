"""The request side of commands to the plant (:mod:`.service`): allowlist, signatures, audit, results."""
