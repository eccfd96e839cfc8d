"""Affiliations and roles (XEP-0045 §5) and who may change what (§8-§10)."""

from __future__ import annotations

OWNER, ADMIN, MEMBER, NONE, OUTCAST = "owner", "admin", "member", "none", "outcast"
MODERATOR, PARTICIPANT, VISITOR = "moderator", "participant", "visitor"

AFFILIATIONS = (OWNER, ADMIN, MEMBER, NONE, OUTCAST)
ROLES = (MODERATOR, PARTICIPANT, VISITOR, NONE)

_AFF_RANK = {OUTCAST: -1, NONE: 0, MEMBER: 1, ADMIN: 2, OWNER: 3}

#: Characters an affiliation's reason (a ban's, a membership's: §9.1, §9.3) may have; the
#: room keeps it and lists it (§9.2), the database stores it (``muc_affiliations.reason``).
REASON_MAX = 500


def aff_rank(aff: str) -> int:
    return _AFF_RANK[aff]


def default_role(aff: str, moderated: bool) -> str:
    """§5.1: the role an entering user gets from its affiliation."""
    if aff in (OWNER, ADMIN):
        return MODERATOR
    if aff == MEMBER:
        return PARTICIPANT
    if aff == OUTCAST:
        return NONE
    return VISITOR if moderated else PARTICIPANT


def may_change_role(
    actor_aff: str, actor_role: str, target_aff: str, target_role: str, new_role: str
) -> bool:
    """§8 and §9: may the actor set ``new_role`` on the target?

    Only moderators change roles; granting or revoking *moderator* is an admin's (or
    owner's) business; nobody acts on someone of higher affiliation, and admins and
    owners cannot be kicked or silenced by a moderator of lower affiliation.
    """
    if actor_role != MODERATOR:
        return False
    if MODERATOR in (new_role, target_role) and aff_rank(actor_aff) < aff_rank(ADMIN):
        return False
    if target_aff in (ADMIN, OWNER) and aff_rank(actor_aff) < aff_rank(target_aff):
        return False
    return not (new_role in (NONE, VISITOR) and target_aff in (ADMIN, OWNER))


def may_change_affiliation(actor_aff: str, target_old: str, target_new: str) -> bool:
    """§9 and §10: admins manage member/outcast/none below admin; owners manage all."""
    if actor_aff == OWNER:
        return True
    if actor_aff != ADMIN:
        return False
    return target_old not in (ADMIN, OWNER) and target_new not in (ADMIN, OWNER)


def may_list_affiliation(actor_aff: str, listed: str) -> bool:
    """Owner and admin lists are visible to admins too (§9.5, §10.5); others to admins."""
    return aff_rank(actor_aff) >= aff_rank(ADMIN)
