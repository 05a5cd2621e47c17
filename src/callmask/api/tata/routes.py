"""Every router of the Tata CPaaS dialect (``/v1/``, reference tata-cpaas-anonymize.txt)
and its operator routes, so the app includes them in one line."""

from __future__ import annotations

from fastapi import APIRouter

from callmask.api.tata import agents, broadcast, calls, records, webhook

routers: tuple[APIRouter, ...] = (
    agents.router,
    broadcast.router,
    calls.router,
    records.router,
    *webhook.routers,
)
