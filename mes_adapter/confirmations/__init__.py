"""Production confirmations to the MES: their shape, id and due windows (:mod:`.planning`, pure),
building and enqueueing what is due (:mod:`.service`), durable delivery (:mod:`.outbox`)."""
