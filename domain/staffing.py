"""What a staff record must hold: only designers have a level, and every designer has one."""

from __future__ import annotations

from domain.enums import Level, Role


def has_level(role: Role) -> bool:
    """Whether people of `role` carry a designer level (chief, senior, designer, junior)."""
    return role == Role.designer


def level_error(role: Role, level: Level | None) -> str | None:
    """Why a role and a level do not go together (None: they do)."""
    if has_level(role) and level is None:
        return "设计师必须有级别 (chief/senior/designer/junior)"
    if not has_level(role) and level is not None:
        return "只有设计师有级别"
    return None
