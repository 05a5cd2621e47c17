"""The account's webhook URL for the Tata dialect: where the call details of its
anonymize, click-to-call and OTP calls are POSTed (the reference says click-to-call's
``custom_identifier`` "will be returned in webhook" but does not say how the webhook is
set; these routes are callmask's own).

- ``PUT /v1/webhook`` ``{"url": "https://..."}`` -> ``{"success": true, "message":
  "Webhook updated", "url": ...}``; ``{"url": null}`` or ``DELETE /v1/webhook`` clears it.
- ``GET /v1/webhook`` -> ``{"success": true, "url": <url or null>}``.
- Operator: ``PUT``/``GET``/``DELETE /admin/accounts/{accountId}/webhook`` with
  ``CALLMASK_ADMIN_KEY``, same bodies, Infobip-style errors like the rest of ``/admin``.

The URL is checked like every URL callmask calls (``callmask.netguard``): http(s) only,
and no loopback or private address unless ``CALLMASK_WEBHOOK_ALLOW_PRIVATE``.
"""

from __future__ import annotations

from fastapi import APIRouter

from callmask.api.deps import AdminDep, CurrentAccount, ServicesDep, SessionDep
from callmask.api.tata.schemas import SuccessOut, WebhookIn, WebhookOut, text_field
from callmask.netguard import MAX_URL_LENGTH, check_url
from callmask.store.repositories import Accounts
from callmask.store.tata_repositories import AccountWebhooks

router = APIRouter(prefix="/v1", tags=["tata: webhook"])
admin_router = APIRouter(
    prefix="/admin/accounts/{account_id}", tags=["operator"], dependencies=[AdminDep]
)


class WebhookUpdatedOut(SuccessOut):
    url: str | None


def _url(body: WebhookIn, services: ServicesDep) -> str | None:
    url = text_field(body.url, "url", max_length=MAX_URL_LENGTH)
    if url is None:
        return None
    return check_url(url, allow_private=services.settings.webhook_allow_private, field="url")


async def _set(session: SessionDep, account_id: str, url: str | None) -> WebhookUpdatedOut:
    await AccountWebhooks(session).set(account_id, url)
    return WebhookUpdatedOut(message="Webhook updated" if url else "Webhook removed", url=url)


@router.put("/webhook")
async def set_webhook(
    body: WebhookIn, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> WebhookUpdatedOut:
    return await _set(session, account.id, _url(body, services))


@router.get("/webhook")
async def get_webhook(session: SessionDep, account: CurrentAccount) -> WebhookOut:
    return WebhookOut(url=await AccountWebhooks(session).get(account.id))


@router.delete("/webhook")
async def delete_webhook(session: SessionDep, account: CurrentAccount) -> WebhookUpdatedOut:
    return await _set(session, account.id, None)


@admin_router.put("/webhook")
async def admin_set_webhook(
    account_id: str, body: WebhookIn, session: SessionDep, services: ServicesDep
) -> WebhookUpdatedOut:
    await Accounts(session).get(account_id)
    return await _set(session, account_id, _url(body, services))


@admin_router.get("/webhook")
async def admin_get_webhook(account_id: str, session: SessionDep) -> WebhookOut:
    await Accounts(session).get(account_id)
    return WebhookOut(url=await AccountWebhooks(session).get(account_id))


@admin_router.delete("/webhook")
async def admin_delete_webhook(account_id: str, session: SessionDep) -> WebhookUpdatedOut:
    await Accounts(session).get(account_id)
    return await _set(session, account_id, None)


routers = (router, admin_router)
