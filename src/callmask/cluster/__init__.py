"""Several callmask nodes on one PostgreSQL: requests about a live call routed to the
node that carries it (``bus``, ``calls``), and the calls of a dead node closed by a
survivor (``takeover``). On SQLite there is one node and none of this runs."""
