"""The browser console served by callmask itself under ``/console``: server-rendered
Jinja2 pages, htmx and uPlot served from the pinned npm install (no CDN), login with
an account's API key or the operator key, the APIs' tenancy, CSRF tokens on every
POST, and a strict Content-Security-Policy. ``routes`` holds the pages, ``web`` the
session, CSRF and header plumbing, ``live`` the server-sent event stream, ``stats``
the dashboard's numbers.
"""
