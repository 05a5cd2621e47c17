"""Twilio's paging of lists: ``PageSize`` (1 to 1000, default 50), ``Page`` (from 0) and
``PageToken`` in, ``{"<key>": [...], "meta": {page, page_size, first_page_url,
previous_page_url, next_page_url, url, key}}`` out.

twilio-python reads the records under ``meta.key`` and follows ``meta.next_page_url``
exactly as given (``twilio/base/page.py``), so the URLs are absolute on the host the
client reached. The token is where the page starts (``PT`` and the row offset in hex):
following a next-page URL lands on the rows after the last one shown even if the client
changed nothing else; a page asked for by number alone starts at ``Page * PageSize``.
Lists are read one row past the page, so ``next_page_url`` is null exactly on the last
page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from callmask.api.twilio.form import Params
from callmask.errors import InvalidInput

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000  # twilio_proxy_v1.json: PageSize maximum
# The row offset must fit the store's 64-bit integers (see api/infobip/numbers.py).
MAX_PAGE = 999_999_999
MAX_OFFSET = MAX_PAGE * MAX_PAGE_SIZE
_TOKEN = re.compile(r"PT([0-9a-f]{1,16})")

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    page_size: int
    offset: int

    @property
    def limit(self) -> int:
        """Rows to read: one more than the page, to know whether another follows."""
        return self.page_size + 1


def token_of(offset: int) -> str:
    return f"PT{offset:x}"


def page_request(params: Params) -> PageRequest:
    page_size = params.integer("PageSize", minimum=1, maximum=MAX_PAGE_SIZE)
    page_size = DEFAULT_PAGE_SIZE if page_size is None else page_size
    page = params.integer("Page", minimum=0, maximum=MAX_PAGE) or 0
    token = params.raw("PageToken")
    if token:
        match = _TOKEN.fullmatch(token)
        if match is None or int(match.group(1), 16) > MAX_OFFSET:
            raise InvalidInput(f"PageToken {token!r} is not one this server gave out")
        offset = int(match.group(1), 16)
    else:
        offset = page * page_size
    return PageRequest(page=page, page_size=page_size, offset=offset)


def _page_url(list_url: str, page_size: int, page: int, offset: int) -> str:
    query: dict[str, str | int] = {"PageSize": page_size, "Page": page}
    if offset:  # the first rows need no token: their URL is first_page_url
        query["PageToken"] = token_of(offset)
    return f"{list_url}?{urlencode(query)}"


def page_body(
    list_url: str,
    key: str,
    request: PageRequest,
    rows: Sequence[Row],
    render: Callable[[Row], dict[str, Any]],
) -> dict[str, Any]:
    """The list answer for ``rows`` as read with ``request.limit``; ``render`` turns one
    row into its JSON object."""
    shown = list(rows[: request.page_size])
    more = len(rows) > request.page_size
    size, page, offset = request.page_size, request.page, request.offset
    first = _page_url(list_url, size, 0, 0)
    this = _page_url(list_url, size, page, offset)
    previous = None
    if page > 0 or offset > 0:
        previous = _page_url(list_url, size, max(page - 1, 0), max(offset - size, 0))
    following = _page_url(list_url, size, page + 1, offset + size) if more else None
    return {
        key: [render(row) for row in shown],
        "meta": {
            "page": page,
            "page_size": size,
            "first_page_url": first,
            "previous_page_url": previous,
            "next_page_url": following,
            "url": this,
            "key": key,
        },
    }
