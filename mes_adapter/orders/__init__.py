"""Production orders from the ERP down to the line (issue 19, item 1).

An order arrives over REST shaped after an ISA-95 / B2MML production request (order id, product,
quantity and unit, recipe/BOM version, due time, line); it is checked against the products and
recipe versions configured as valid (``mes.orders``) and kept in its own SQLite file. Starting it
writes the batch parameters to the PLC through the signed, allowlisted command path (the line's
``StartBatch`` method); only when the edge confirms that write (the command result) does the batch
count as started: the batch context is asserted then, with the order as work order and batch id.
"""

from .config import OrderLineConfig, OrdersConfig, ProductSpec
from .models import Order, OrderIn, OrderStatus
from .rules import OrderError
from .service import OrderService
from .store import OrderStore

__all__ = ["Order", "OrderError", "OrderIn", "OrderLineConfig", "OrderService", "OrderStatus", "OrderStore",
           "OrdersConfig", "ProductSpec"]
