"""Webhook delivery: everything callmask sends to a customer after the fact (status
reports, call events), delivered at least once.

``outbox.enqueue`` writes an event in the caller's transaction; ``worker.DeliveryWorker``
claims due events, POSTs them signed the Standard Webhooks way (``signature``), retries
by the schedule in ``retry`` and logs every attempt; ``repository`` serves the delivery
log and the signing secrets to the API and CLI. The routing callback a caller waits
for is not queued and is not here (``routing/``).
"""
