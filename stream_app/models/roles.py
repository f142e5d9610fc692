"""Role changes of the model lifecycle: promote, rollback, and the decisions they publish.

Each change is written to the registry first (the source of truth every worker reads), then
announced on ``model-updates`` (which makes every worker re-read the roles and swap), then
recorded on ``model-decisions`` with its reasons. The command line and the orchestrator both
come through here.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from stream_app.contracts.outputs import ModelDecision, model_decision_payload
from stream_app.errors import ModelNotFound, StreamAppError
from stream_app.models.announce import announce, produce_acknowledged
from stream_app.models.registry import (
    ModelRegistry,
    RoleAssignment,
    challenger_slot,
    challenger_slots,
    is_role_slot,
    role_kind,
    slot_number,
)
from stream_app.settings import KafkaSettings


def actor(kind: str) -> str:
    """Who decides: ``cli@host`` (a person) or ``orchestrator@host:pid``."""
    host = socket.gethostname()
    return f"{kind}@{host}:{os.getpid()}" if kind == "orchestrator" else f"{kind}@{host}"


def new_decision_id() -> str:
    return uuid.uuid4().hex[:16]


def decision(
    use_case: str,
    action: str,
    model_version: str | None,
    champion_version: str | None,
    reasons: list[str],
    decided_by: str,
    details: dict[str, Any] | None = None,
    decision_id: str | None = None,
) -> ModelDecision:
    """A decision record, stamped now."""
    return model_decision_payload(
        decision_id=decision_id or new_decision_id(),
        use_case=use_case,
        action=action,
        model_version=model_version,
        champion_version=champion_version,
        reasons=reasons,
        decided_at=int(time.time() * 1000),
        decided_by=decided_by,
        details=details,
    )


def publish_decision(kafka: KafkaSettings, record: ModelDecision) -> None:
    produce_acknowledged(kafka, kafka.topics.model_decisions, record["use_case"].encode(), record)


def _challenger_slot_for(roles: dict[str, RoleAssignment], version: str,
                         traffic: float | None) -> str:  # fmt: skip
    """Where a challenger goes: the slot it already holds, a new slot beside challengers that
    take traffic (when it takes some too), or ``challenger``."""
    slots = challenger_slots(roles)
    for slot in slots:
        if roles[slot].version == version:
            return slot
    if traffic and any(roles[s].traffic_fraction for s in slots):
        taken = {slot_number(s) for s in slots}
        return challenger_slot(min(n for n in range(1, len(taken) + 2) if n not in taken))
    return "challenger"


def _check_shares(roles: dict[str, RoleAssignment], slot: str, traffic: float | None) -> None:
    others = sum(roles[s].traffic_fraction or 0.0 for s in challenger_slots(roles) if s != slot)
    if others + (traffic or 0.0) > 1 + 1e-9:
        raise StreamAppError(
            f"the challengers would take {others + (traffic or 0.0):.0%} of live traffic "
            f"({others:.0%} already): their shares may sum to at most 100%"
        )


@dataclass(frozen=True)
class RoleChange:
    role: str
    version: str | None
    previous: str | None


class Roles:
    """Role changes for one use case, through the registry and the two topics."""

    def __init__(self, registry: ModelRegistry, kafka: KafkaSettings, decided_by: str) -> None:
        self.registry = registry
        self.kafka = kafka
        self.decided_by = decided_by
        self.use_case = registry.use_case

    def _set(
        self, role: str, version: str | None, reason: str, traffic: float | None = None
    ) -> RoleChange:
        previous = self.registry.roles().get(role)
        self.registry.assign(role, version, reason, traffic)
        announce(self.kafka, self.use_case, role, version, reason, traffic)
        return RoleChange(role, version, previous.version if previous else None)

    def promote(
        self,
        version: str,
        reason: str,
        *,
        decision_id: str | None = None,
        details: dict[str, Any] | None = None,
        reasons: list[str] | None = None,
    ) -> list[RoleChange]:
        """Make ``version`` the champion (it leaves the challenger or shadow role it held)."""
        self.registry.get(version)  # must exist
        roles = self.registry.roles()
        current = roles.get("champion")
        if current is not None and current.version == version:
            raise StreamAppError(f"{version} is already the champion")
        changes = [
            self._set(role, None, f"{version} promoted to champion")
            for role in sorted(roles)
            if role != "champion" and roles[role].version == version
        ]
        changes.append(self._set("champion", version, reason))
        record = decision(
            self.use_case, "promoted", version, current.version if current else None,
            reasons or [reason], self.decided_by, details, decision_id,
        )  # fmt: skip
        publish_decision(self.kafka, record)
        return changes

    def assign(
        self, role: str, version: str | None, reason: str, traffic: float | None = None
    ) -> RoleChange:
        """Give a version the challenger (optionally with a share of live traffic) or shadow
        role; ``None`` clears the role (a challenger slot: ``challenger-2``, ...).

        A/B/N: a challenger given a share of traffic while other challengers already take
        some gets a slot of its own (``challenger-2``, ``challenger-3``, ...), each tracked
        apart; the shares of all challengers may sum to at most 1, the champion taking the
        rest. A version that already holds a challenger slot keeps it (its share changes);
        otherwise a challenger without traffic replaces the one in ``challenger``."""
        kind = role_kind(role)
        if role == "champion":
            raise StreamAppError("use promote (or rollback) to change the champion")
        if not is_role_slot(role):
            raise StreamAppError(f"unknown role {role!r}: champion, challenger or shadow")
        if traffic is not None and kind != "challenger":
            raise StreamAppError("only a challenger takes a share of live traffic")
        if traffic is not None and not 0 <= traffic <= 1:
            raise StreamAppError(f"traffic must be between 0 and 1, not {traffic}")
        roles = self.registry.roles()
        champion = roles.get("champion")
        if version is not None:
            self.registry.get(version)
            if champion is not None and champion.version == version:
                raise StreamAppError(f"{version} is the champion; it cannot also be {role}")
            if role == "challenger":
                role = _challenger_slot_for(roles, version, traffic)
        if kind == "challenger" and version is not None:
            _check_shares(roles, role, traffic)
        change = self._set(role, version, reason, traffic)
        what = f"{role} cleared" if version is None else f"{version} is now {role}"
        if traffic:
            what += f" on {traffic:.0%} of live traffic"
        record = decision(
            self.use_case, "role_assigned", version, champion.version if champion else None,
            [what, reason], self.decided_by, {"role": role, "traffic_fraction": traffic},
        )  # fmt: skip
        publish_decision(self.kafka, record)
        return change

    def clear(self, kind: str, version: str | None, reason: str) -> list[RoleChange]:
        """Clear the shadow, every challenger slot, or (``version``) the slot it holds."""
        roles = self.registry.roles()
        slots = [s for s in sorted(roles) if s != "champion" and role_kind(s) == kind
                 and (version is None or roles[s].version == version)]  # fmt: skip
        if not slots:
            held = f"{version} holds no {kind} role" if version else f"no {kind} to clear"
            raise StreamAppError(held)
        return [self.assign(slot, None, reason) for slot in slots]

    def previous_champion(self) -> str:
        """The champion before the current one, from the role history."""
        current = self.registry.champion().version
        for change in self.registry.role_history(limit=1000):
            if change["role"] == "champion" and change["version"] == current:
                if change["previous"]:
                    return str(change["previous"])
                break
        raise ModelNotFound(f"{current} has no previous champion to roll back to")

    def rollback(self, reason: str, to: str | None = None) -> RoleChange:
        """Restore the previous champion (or ``to``)."""
        current = self.registry.champion().version
        target = to or self.previous_champion()
        if target == current:
            raise StreamAppError(f"{target} is already the champion")
        self.registry.get(target)
        roles = self.registry.roles()
        for role in sorted(roles):
            if role != "champion" and roles[role].version == target:
                self._set(role, None, f"{target} restored as champion")
        change = self._set("champion", target, reason)
        record = decision(
            self.use_case, "rolled_back", target, current, [reason], self.decided_by,
            {"replaced": current},
        )  # fmt: skip
        publish_decision(self.kafka, record)
        return change
