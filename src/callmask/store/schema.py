"""Every table of the store, in one import: Alembic's ``target_metadata`` and the
tests' schema-drift check read ``Base.metadata`` after importing this module, so a
model module that is not imported here is a table migrations never see."""

from __future__ import annotations

from callmask.store import models
from callmask.store.models import Base

__all__ = ["Base", "models"]
