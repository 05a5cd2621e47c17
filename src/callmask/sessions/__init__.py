"""Masking sessions over a shared number pool (Twilio Proxy's model): services that own
a pool of the account's DIDs, sessions pairing two participants, each of whom dials and
sees one pool number, interactions (the calls), the allocator and the sessions' lifetime.

Above the store (it uses ``callmask.store`` and the webhook outbox), below the API
(``callmask.api.twilio``) and the call routing (``callmask.routing.sessions``)."""
