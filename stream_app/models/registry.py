"""The model registry in Cassandra: immutable versions and the roles they hold.

Every worker reads the same tables, so a version registered on one machine can be loaded on
any other. Role changes are recorded in ``model_roles`` (current) and ``model_role_history``
(for rollback and lineage); ``stream_app.models.announce`` publishes them on the compacted
``model-updates`` topic.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from cassandra.cluster import Session

from stream_app.errors import ModelNotFound
from stream_app.models.calibration import calibrated
from stream_app.models.compile_process import compile_elsewhere
from stream_app.models.compiled import Compilation, CompileFailed, FallbackHook
from stream_app.models.compiled import load_scorer as load_compiled
from stream_app.models.loss_estimation import version_estimator
from stream_app.models.scorer import Matrix, Scorer
from stream_app.monitoring.estimates import Estimator

ROLES = ("champion", "challenger", "shadow")  # kinds; challengers have slots (A/B/N)
_CHALLENGER_SLOT = re.compile(r"^challenger(-[1-9][0-9]*)?$")


def role_kind(slot: str) -> str:
    """What a role slot is: ``challenger-2`` (a further A/B/N arm) is a challenger."""
    return "challenger" if _CHALLENGER_SLOT.match(slot) else slot


def is_role_slot(slot: str) -> bool:
    return slot in ROLES or bool(_CHALLENGER_SLOT.match(slot))


def slot_number(slot: str) -> int:
    """1 for ``challenger``, N for ``challenger-N``."""
    return int(slot.rsplit("-", 1)[1]) if "-" in slot else 1


def challenger_slots(roles: dict[str, Any]) -> list[str]:
    """The challenger slots held, in the order their traffic ranges are laid out."""
    return sorted((s for s in roles if role_kind(s) == "challenger"), key=slot_number)


def challenger_slot(number: int) -> str:
    """The ``number``-th challenger's slot: ``challenger``, ``challenger-2``, ..."""
    return "challenger" if number == 1 else f"challenger-{number}"


def new_version(use_case: str, now_ms: int | None = None) -> str:
    """A fresh, sortable version name: ``<use_case>-<UTC time>-<4 hex>``."""
    now = datetime.fromtimestamp((now_ms or time.time() * 1000) / 1000, UTC)
    return f"{use_case}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class ModelVersion:
    """What the registry knows about one version (everything but the artifact)."""

    use_case: str
    version: str
    created_at: int
    feature_names: list[str]
    task: str
    spec_hash: str
    parent_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    training_window: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, Any] = field(default_factory=dict)
    status: str = "registered"
    calibration: dict[str, Any] = field(default_factory=dict)  # models.calibration ({}: none)
    estimation: dict[str, Any] = field(default_factory=dict)  # how it estimates its performance


@dataclass(frozen=True)
class RoleAssignment:
    """A version holding a role."""

    role: str
    version: str
    traffic_fraction: float | None
    assigned_at: int
    reason: str


class RegistryReader(Protocol):
    """What a worker reads of the registry to serve the roles (Cassandra: ``ModelRegistry``)."""

    use_case: str

    def roles(self) -> dict[str, RoleAssignment]: ...

    def get(self, version: str) -> ModelVersion: ...

    def artifact(self, version: str) -> str: ...

    def loss_models(self, version: str) -> dict[str, str]: ...

    def champion(self) -> RoleAssignment: ...


def load_scorer(
    registry: RegistryReader,
    version: str,
    compilation: Compilation,
    threads: int = 1,
    check_rows: Matrix | None = None,
    on_fallback: FallbackHook | None = None,
) -> Scorer:
    """A registered version ready to score on ``threads`` threads: compiled and checked against
    LightGBM (``check_rows``: real rows in its column order, besides its thresholds' rows), or
    LightGBM itself when compilation is off or fails (``on_fallback(reason)``). The one way the
    worker, replay and evaluation load a model."""
    model = registry.get(version)
    scorer = load_compiled(
        model.version, model.feature_names, registry.artifact(version),
        compilation=_for_use_case(compilation, model.use_case), threads=threads,
        check_rows=check_rows, on_fallback=on_fallback,
    )  # fmt: skip
    return calibrated(scorer, model.calibration)


def estimator_of(
    registry: RegistryReader, model: ModelVersion, threshold: float
) -> Estimator | None:
    """The estimator a registered version's stored calibration, estimation and loss models
    make (``models.loss_estimation.version_estimator``)."""
    texts = registry.loss_models(model.version) if model.task == "regression" else {}
    return version_estimator(model.task, threshold, model.estimation, bool(model.calibration),
                             texts)  # fmt: skip


def compile_in_child(registry: RegistryReader, version: str, compilation: Compilation) -> None:
    """Compile ``version`` into its use case's cache in a child process (the caller's GIL is
    never held by lleaves); ``CompileFailed`` when it cannot be compiled."""
    model = registry.get(version)
    cache_dir = _for_use_case(compilation, model.use_case).cache_dir
    if cache_dir is None:
        raise CompileFailed("compile_error", "no cache folder to compile into")
    compile_elsewhere(model.version, registry.artifact(version), cache_dir, compilation.quick)


def _for_use_case(compilation: Compilation, use_case: str) -> Compilation:
    if compilation.cache_dir is None:
        return compilation
    return replace(compilation, cache_dir=compilation.cache_dir / use_case)


class ModelRegistry:
    """Registry access for one use case; owns its prepared statements."""

    def __init__(self, session: Session, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        ks = keyspace
        self._insert = session.prepare(
            f"INSERT INTO {ks}.model_versions (use_case, version, created_at, parent_version, "
            "spec_hash, feature_names, task, params, training_window, metrics, distributions, "
            "artifact, status, calibration, estimation, loss_models) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        self._select = session.prepare(
            f"SELECT use_case, version, toUnixTimestamp(created_at) AS created_ms, "
            "parent_version, spec_hash, feature_names, task, params, training_window, metrics, "
            "distributions, status, calibration, estimation "
            f"FROM {ks}.model_versions WHERE use_case = ? AND version = ?"
        )
        self._select_all = session.prepare(
            f"SELECT use_case, version, toUnixTimestamp(created_at) AS created_ms, "
            "parent_version, spec_hash, feature_names, task, params, training_window, metrics, "
            "distributions, status, calibration, estimation "
            f"FROM {ks}.model_versions WHERE use_case = ?"
        )
        self._artifact = session.prepare(
            f"SELECT artifact FROM {ks}.model_versions WHERE use_case = ? AND version = ?"
        )
        self._loss_models = session.prepare(
            f"SELECT loss_models FROM {ks}.model_versions WHERE use_case = ? AND version = ?"
        )
        self._status = session.prepare(
            f"UPDATE {ks}.model_versions SET status = ? WHERE use_case = ? AND version = ?"
        )
        self._roles = session.prepare(
            f"SELECT role, version, traffic_fraction, toUnixTimestamp(assigned_at) AS at_ms, "
            f"reason FROM {ks}.model_roles WHERE use_case = ?"
        )
        self._assign = session.prepare(
            f"INSERT INTO {ks}.model_roles (use_case, role, version, traffic_fraction, "
            "assigned_at, reason) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._clear = session.prepare(
            f"DELETE FROM {ks}.model_roles WHERE use_case = ? AND role = ?"
        )
        self._evaluation_insert = session.prepare(
            f"INSERT INTO {ks}.model_evaluations (use_case, version, evaluated_at, against, "
            "evaluation) VALUES (?, ?, ?, ?, ?)"
        )
        self._evaluations = session.prepare(
            f"SELECT version, toUnixTimestamp(evaluated_at) AS at_ms, against, evaluation "
            f"FROM {ks}.model_evaluations WHERE use_case = ?"
        )
        self._history_insert = session.prepare(
            f"INSERT INTO {ks}.model_role_history (use_case, assigned_at, role, version, "
            "previous, reason) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._history = session.prepare(
            f"SELECT toUnixTimestamp(assigned_at) AS at_ms, role, version, previous, reason "
            f"FROM {ks}.model_role_history WHERE use_case = ? LIMIT ?"
        )

    def register(
        self, model: ModelVersion, artifact: str, loss_models: dict[str, str] | None = None
    ) -> None:
        """Store a new version; versions are immutable, so a name is never reused.
        ``loss_models``: DLE's loss models by metric (LightGBM texts), for regression."""
        applied = self.session.execute(
            self._insert,
            (
                model.use_case, model.version, model.created_at, model.parent_version,
                model.spec_hash, model.feature_names, model.task, json.dumps(model.params),
                json.dumps(model.training_window), json.dumps(model.metrics),
                json.dumps(model.distributions), artifact.encode(), model.status,
                json.dumps(model.calibration), json.dumps(model.estimation),
                json.dumps(loss_models or {}).encode(),
            ),
        ).one()  # fmt: skip
        if not applied.applied:
            raise ValueError(f"model version {model.version} already exists")

    @staticmethod
    def _from_row(row: Any) -> ModelVersion:
        return ModelVersion(
            use_case=row.use_case,
            version=row.version,
            created_at=row.created_ms,
            feature_names=list(row.feature_names),
            task=row.task,
            spec_hash=row.spec_hash,
            parent_version=row.parent_version,
            params=json.loads(row.params or "{}"),
            training_window=json.loads(row.training_window or "{}"),
            metrics=json.loads(row.metrics or "{}"),
            distributions=json.loads(row.distributions or "{}"),
            status=row.status,
            calibration=json.loads(row.calibration or "{}"),
            estimation=json.loads(row.estimation or "{}"),
        )

    def get(self, version: str) -> ModelVersion:
        row = self.session.execute(self._select, (self.use_case, version)).one()
        if row is None:
            raise ModelNotFound(f"no model version {version!r} for use case {self.use_case}")
        return self._from_row(row)

    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        rows = self.session.execute(self._select_all, (self.use_case,))
        return sorted((self._from_row(r) for r in rows), key=lambda m: m.created_at)

    def artifact(self, version: str) -> str:
        row = self.session.execute(self._artifact, (self.use_case, version)).one()
        if row is None:
            raise ModelNotFound(f"no model version {version!r} for use case {self.use_case}")
        return bytes(row.artifact).decode()

    def loss_models(self, version: str) -> dict[str, str]:
        """DLE's loss models of a version by metric (``{}``: none; older versions)."""
        row = self.session.execute(self._loss_models, (self.use_case, version)).one()
        if row is None:
            raise ModelNotFound(f"no model version {version!r} for use case {self.use_case}")
        stored: dict[str, str] = json.loads(bytes(row.loss_models or b"{}").decode())
        return stored

    def record_evaluation(self, evaluation: dict[str, Any], at_ms: int | None = None) -> None:
        """Keep an evaluation (``Evaluation.as_dict()``) with the version it judged."""
        at = at_ms if at_ms is not None else int(time.time() * 1000)
        self.session.execute(
            self._evaluation_insert,
            (self.use_case, evaluation["challenger"], at, evaluation["champion"],
             json.dumps(evaluation)),
        )  # fmt: skip

    def evaluations(self) -> dict[str, list[dict[str, Any]]]:
        """Every recorded evaluation by the version judged, newest first."""
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self.session.execute(self._evaluations, (self.use_case,)):
            found.setdefault(row.version, []).append(
                {"at": row.at_ms, "against": row.against, **json.loads(row.evaluation)}
            )
        return found

    def roles(self) -> dict[str, RoleAssignment]:
        rows = self.session.execute(self._roles, (self.use_case,))
        return {
            r.role: RoleAssignment(r.role, r.version, r.traffic_fraction, r.at_ms, r.reason or "")
            for r in rows
        }

    def champion(self) -> RoleAssignment:
        """The champion's assignment, or ``ModelNotFound`` saying how to get one."""
        champion = self.roles().get("champion")
        if champion is None:
            raise ModelNotFound(
                f"no champion model for use case {self.use_case}: import its labelled history "
                "(`stream-app history import`) and `stream-app train`, or import a model "
                "trained elsewhere (`stream-app models import`); a use case with a "
                "[simulation] can also make one with `stream-app bootstrap`"
            )
        return champion

    def assign(
        self, role: str, version: str | None, reason: str, traffic_fraction: float | None = None
    ) -> RoleAssignment | None:
        """Give ``role`` to ``version`` (None clears it); records the change in the history."""
        if not is_role_slot(role):
            raise ValueError(f"unknown role {role!r}; roles are {ROLES} (challenger-N: A/B/N)")
        previous = self.roles().get(role)
        now = int(time.time() * 1000)
        if version is None:
            self.session.execute(self._clear, (self.use_case, role))
        else:
            self.get(version)  # must exist
            self.session.execute(
                self._assign, (self.use_case, role, version, traffic_fraction, now, reason)
            )
            self.session.execute(self._status, (role, self.use_case, version))
        if previous is not None and previous.version != version:
            demoted = "retired" if role == "champion" else "registered"
            self.session.execute(self._status, (demoted, self.use_case, previous.version))
        self.session.execute(
            self._history_insert,
            (self.use_case, now, role, version, previous.version if previous else None, reason),
        )
        if version is None:
            return None
        return RoleAssignment(role, version, traffic_fraction, now, reason)

    def role_history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Role changes, newest first."""
        rows = self.session.execute(self._history, (self.use_case, limit))
        return [
            {"at": r.at_ms, "role": r.role, "version": r.version, "previous": r.previous,
             "reason": r.reason}
            for r in rows
        ]  # fmt: skip
