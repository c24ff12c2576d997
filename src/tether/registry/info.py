"""What a team says about a model: its owner, a description, tags, and how old its champion may grow.

None of it is part of any version (versions are immutable; this is not): it is how a platform with thousands of
models finds one (`tether.registry.catalog.search`) and what the fleet view flags (a champion older than its
``max_champion_age_days``). Each change is stamped with who made it and when.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tether.core.errors import InvalidInputError, NotFoundError
from tether.store.tables import model_info, model_tags, model_versions

TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
MAX_TAGS = 50
#: "Not given" (None means "clear it").
UNSET: Any = object()


@dataclass
class ModelInfo:
    name: str
    owner: str | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)
    max_champion_age_days: float | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return out


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise InvalidInputError(
            f"tag {tag!r} is not valid", hint="1 to 100 letters, digits and . _ : / - , starting with a letter or digit"
        )
    return tag


def read(conn: Connection, names: list[str]) -> dict[str, ModelInfo]:
    """The info of ``names`` (every name present; defaults for models nobody described)."""
    out = {n: ModelInfo(n) for n in names}
    for i in range(0, len(names), 500):
        chunk = names[i : i + 500]
        for r in conn.execute(select(model_info).where(model_info.c.name.in_(chunk))).mappings():
            out[r["name"]] = ModelInfo(
                r["name"],
                r["owner"],
                r["description"],
                [],
                r["max_champion_age_days"],
                r["updated_at"],
                r["updated_by"],
            )
        q = select(model_tags.c.model_name, model_tags.c.tag).where(model_tags.c.model_name.in_(chunk))
        for name, tag in conn.execute(q.order_by(model_tags.c.tag)):
            out[name].tags.append(tag)
    return out


def write(
    conn: Connection,
    name: str,
    *,
    at: datetime,
    actor: str,
    owner: str | None = UNSET,
    description: str = UNSET,
    tags: list[str] = UNSET,
    add_tags: list[str] | None = None,
    remove_tags: list[str] | None = None,
    max_champion_age_days: float | None = UNSET,
) -> ModelInfo:
    """Change what is given (``tags`` replaces the set; ``add_tags``/``remove_tags`` edit it)."""
    if conn.execute(select(model_versions.c.id).where(model_versions.c.name == name).limit(1)).first() is None:
        raise NotFoundError(f"no model named {name!r}", hint="register a version first: tether register NAME ...")
    if owner is not UNSET and owner is not None and not 0 < len(owner.strip()) <= 200:
        raise InvalidInputError("an owner is 1 to 200 characters", hint="a team's name, e.g. --owner fraud-team")
    if max_champion_age_days is not UNSET and max_champion_age_days is not None and max_champion_age_days <= 0:
        raise InvalidInputError(f"max_champion_age_days must be positive, got {max_champion_age_days}")
    current = read(conn, [name])[name]
    new_tags = set(current.tags if tags is UNSET else map(check_tag, tags))
    new_tags |= set(map(check_tag, add_tags or []))
    new_tags -= set(remove_tags or [])
    if len(new_tags) > MAX_TAGS:
        raise InvalidInputError(f"a model has at most {MAX_TAGS} tags, this would give it {len(new_tags)}")
    values = {
        "owner": current.owner if owner is UNSET else (owner.strip() if owner else None),
        "description": current.description if description is UNSET else (description or ""),
        "max_champion_age_days": current.max_champion_age_days
        if max_champion_age_days is UNSET
        else max_champion_age_days,
        "updated_at": at,
        "updated_by": actor,
    }
    if conn.execute(select(model_info.c.name).where(model_info.c.name == name)).first() is None:
        conn.execute(insert(model_info).values(name=name, **values))
    else:
        conn.execute(update(model_info).where(model_info.c.name == name).values(**values))
    conn.execute(delete(model_tags).where(model_tags.c.model_name == name))
    for tag in sorted(new_tags):
        conn.execute(insert(model_tags).values(model_name=name, tag=tag))
    return read(conn, [name])[name]
