"""Files the console's pages load: its own stylesheet and script (in the package), and
the pinned front-end libraries ``scripts/install-frontend.sh`` installs from npm into
``.frontend/`` (or ``$CALLMASK_CONSOLE_ASSETS``). Only the files named here are served,
so nothing else under ``node_modules`` is reachable; nothing comes from a CDN.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.responses import FileResponse, Response

PACKAGE_STATIC = Path(__file__).resolve().parent / "static"
# src/callmask/console/assets.py -> the checkout's root, where the install script puts them.
CHECKOUT_FRONTEND = Path(__file__).resolve().parents[3] / ".frontend" / "node_modules"

VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "sse.min.js": "htmx-ext-sse/dist/sse.min.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
OWN_FILES = ("console.css", "console.js")
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}


def vendor_dir() -> Path:
    configured = os.environ.get("CALLMASK_CONSOLE_ASSETS")
    return Path(configured) if configured else CHECKOUT_FRONTEND


def missing_vendor_files() -> list[str]:
    base = vendor_dir()
    return [name for name, path in VENDOR_FILES.items() if not (base / path).is_file()]


def asset_response(name: str) -> Response:
    if name in OWN_FILES:
        path = PACKAGE_STATIC / name
    elif name in VENDOR_FILES:
        path = vendor_dir() / VENDOR_FILES[name]
    else:
        return Response("not found", status_code=404, media_type="text/plain")
    if not path.is_file():
        return Response(
            f"{name} is not installed: run scripts/install-frontend.sh",
            status_code=404,
            media_type="text/plain",
        )
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
