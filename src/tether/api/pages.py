"""Pagination for every list the control plane returns: ``?limit=&offset=``, and the page says what is next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel

T = TypeVar("T")
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (1 to {MAX_LIMIT}).")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip.")]
#: A row id in a path: what the databases can hold (a larger number was an OverflowError, a 500: schemathesis).
RowId = Annotated[int, Path(ge=0, le=2**63 - 1, description="A row id.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    #: The offset of the next page; null on the last one.
    next_offset: int | None


def page(items: Sequence[T], limit: int, offset: int, total: int | None = None) -> Page[T]:
    """One page of ``items`` (all of them, or already this page when ``total`` is given)."""
    if total is None:
        total = len(items)
        items = items[offset : offset + limit]
    nxt = offset + len(items)
    return Page[T](items=list(items), total=total, limit=limit, offset=offset, next_offset=nxt if nxt < total else None)
