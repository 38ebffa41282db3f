from __future__ import annotations

from sqlalchemy import Index, text
from sqlmodel import Field

from app.db.mixins import TenantOwned, Versioned


class Skill(TenantOwned, Versioned, table=True):
    """A skill agents hold with a proficiency 1-5. Languages are skills of kind 'language'."""

    __tablename__ = "skills"

    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    kind: str = Field(default="skill", max_length=16)  # skill | language

    __table_args__ = (
        Index("ix_skills_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
    )
