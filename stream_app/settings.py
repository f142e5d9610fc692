"""The one settings object of stream-app.

Every option comes from the environment (prefix ``STREAM_APP_``, nested sections joined by
``__``, e.g. ``STREAM_APP_KAFKA__BOOTSTRAP_SERVERS``), from a ``.env`` file, or from files in
``STREAM_APP_SECRETS_DIR`` (one file per field, for secrets). Defaults point at the local
services that ``stream-app services up`` runs on 127.0.0.1.

``Settings`` is built once in the entry point and passed down; nothing else reads the
environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stream_app.client_properties import PropertyValue, parse, revealed
from stream_app.errors import ConfigurationError

ENV_PREFIX = "STREAM_APP_"
SECRETS_DIR_VARIABLE = "STREAM_APP_SECRETS_DIR"
# OpenTelemetry's standard variables, honoured when `tracing.endpoint` is not set
OTEL_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTEL_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"

_SECTION = ConfigDict(extra="forbid", frozen=True)


class TopicNames(BaseModel):
    """Kafka topic names (defaults from the design)."""

    model_config = _SECTION

    client_events: str = Field("client-events", description="Client events to score.")
    sensor_readings: str = Field("sensor-readings", description="Sensor readings for features.")
    ground_truth: str = Field("ground-truth", description="Labels for earlier client events.")
    predictions: str = Field("predictions", description="Published predictions.")
    accuracy_events: str = Field("accuracy-events", description="Prediction vs ground truth.")
    dead_letter: str = Field("dead-letter", description="Invalid input with its reason.")
    model_updates: str = Field(
        "model-updates", description="Compacted topic announcing model roles (key = role)."
    )
    predictions_shadow: str = Field(
        "predictions-shadow", description="Shadow models' predictions (never the champion's)."
    )
    model_decisions: str = Field(
        "model-decisions", description="Lifecycle decisions (retrain, evaluate, promote) and why."
    )
    performance_estimates: str = Field(
        "performance-estimates",
        description="Performance per model version estimated without labels (CBPE, DLE), and "
        "each window's estimate against its realised value.",
    )

    def all(self) -> list[str]:
        """Every topic name, in design order."""
        return list(self.model_dump().values())


class KafkaSettings(BaseModel):
    """How every client of the project reaches Kafka."""

    model_config = _SECTION

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    ssl_ca_file: Path | None = Field(None, description="PEM file of the CA that signed brokers.")
    topics: TopicNames = Field(default_factory=TopicNames, description="Topic names.")
    partitions: int = Field(6, ge=1, description="Partitions per topic created by `init`.")
    replication_factor: int = Field(1, ge=1, description="Replication factor for `init`.")
    min_insync_replicas: int = Field(
        1, ge=1,
        description="Replicas that must have a write before a producer with acks=all is "
        "answered: `init` sets it on every topic when above Kafka's default of 1, and the "
        "local cluster's brokers use it for their internal topics. At most replication_factor.",
    )  # fmt: skip
    output_linger_ms: float = Field(
        5, ge=0, le=1000,
        description="How long the worker's producer waits to fill a request of outputs "
        "(predictions, dead letters, accuracy events), ms: librdkafka's linger.ms. Every "
        "prediction waits up to this long before it is sent.",
    )  # fmt: skip

    client_properties: dict[str, str | int | float | bool | SecretStr] = Field(
        default_factory=dict,
        description="Any librdkafka property, passed to every confluent-kafka client of the "
        'project, e.g. {"ssl.certificate.location": "/etc/kafka/client.pem", '
        '"ssl.key.location": "/etc/kafka/client.key", "client.rack": "eu-1a"} '
        "(STREAM_APP_KAFKA__CLIENT_PROPERTIES as JSON, or a file of that name in the secrets "
        "folder). They win over the project's tuning of a client; properties with a setting "
        "of their own, or that the project's guarantees rest on, are refused. Values of "
        "secret-looking names (*password*, *secret*, ssl.key.pem, ...) are masked. Faust's "
        "own connection takes the ssl.* files of them (see the README).",
    )

    @field_validator("client_properties", mode="before")
    @classmethod
    def _checked_properties(cls, value: object) -> dict[str, PropertyValue]:
        # A ConfigurationError passes through pydantic as is: its message never shows a value.
        return parse(value)

    @model_validator(mode="after")
    def _one_ca_file(self) -> KafkaSettings:
        passed = self.client_properties.get("ssl.ca.location")
        if passed is not None and self.ssl_ca_file and str(passed) != str(self.ssl_ca_file):
            raise ConfigurationError(
                "kafka.ssl_ca_file and kafka.client_properties['ssl.ca.location'] name "
                f"different files ({self.ssl_ca_file}, {passed}); set one of them"
            )
        return self

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write with acks=all could succeed"
            )
        return self

    def bootstrap_list(self) -> list[tuple[str, int]]:
        """The bootstrap servers as (host, port) pairs."""
        pairs = []
        for item in self.bootstrap_servers.split(","):
            host, _, port = item.strip().rpartition(":")
            pairs.append((host, int(port)))
        return pairs

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for item in value.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {item.strip()!r}")
        return value

    def client_config(self, own: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka (confluent-kafka) configuration for this cluster: the fields above, then
        ``own`` (a client's own choices), then ``client_properties`` (which win: the ones
        that would break a guarantee are refused when the settings are built)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            # Small requests are pipelined; Nagle's algorithm would delay them (latency).
            "socket.nagle.disable": True,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_file:
            config["ssl.ca.location"] = str(self.ssl_ca_file)
        return {**config, **(own or {}), **revealed(self.client_properties)}

    def ca_location(self) -> Path | None:
        """The CA file clients trust: ``ssl_ca_file`` or the passed-through
        ``ssl.ca.location``."""
        passed = self.client_properties.get("ssl.ca.location")
        return self.ssl_ca_file or (Path(str(passed)) if passed is not None else None)


class CassandraSettings(BaseModel):
    """How every client of the project reaches Cassandra."""

    model_config = _SECTION

    contact_points: list[str] = Field(["127.0.0.1"], description="Cassandra hosts.")
    port: int = Field(9042, description="CQL native transport port.")
    local_dc: str = Field("datacenter1", description="Local datacenter for load balancing.")
    keyspace: str = Field("stream_app", description="Keyspace of all stream-app tables.")
    replication_factor: int = Field(1, ge=1, description="Replicas of the keyspace (`init`).")
    replication_strategy: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = Field(
        "SimpleStrategy",
        description="The keyspace's replication class (`init`): NetworkTopologyStrategy for "
        "production clusters, with `replication_factor` replicas in `local_dc` unless "
        "`datacenters` names the replicas per datacenter.",
    )
    datacenters: dict[str, int] = Field(
        default_factory=dict,
        description='NetworkTopologyStrategy: replicas per datacenter, e.g. {"dc1": 3, "dc2": 3}.',
    )
    username: str | None = Field(None, description="User for PasswordAuthenticator.")
    password: SecretStr | None = Field(None, description="Password (secret).")
    ssl_ca_file: Path | None = Field(
        None, description="PEM file of the CA that signed the nodes: clients connect over TLS."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Per-request timeout, seconds.")
    consistency: Literal["ONE", "LOCAL_ONE", "LOCAL_QUORUM", "QUORUM", "ALL"] = Field(
        "LOCAL_ONE",
        description="Consistency level of every read and write (the driver's default "
        "execution profiles): LOCAL_ONE suits one node; LOCAL_QUORUM with replication 3 keeps "
        "reads and writes working, and reads seeing every acknowledged write, with a node down.",
    )

    @field_validator("datacenters")
    @classmethod
    def _datacenter_names(cls, value: dict[str, int]) -> dict[str, int]:
        for name, count in value.items():
            if not name or not all(c.isalnum() or c in "_-." for c in name) or count < 1:
                raise ValueError(f"datacenters: {name!r}: {count} is not a datacenter name "
                                 "with at least one replica")  # fmt: skip
        return value

    @field_validator("keyspace")
    @classmethod
    def _cql_identifier(cls, value: str) -> str:
        if not value.replace("_", "a").isalnum() or not value[0].isalpha():
            raise ValueError(f"keyspace must be a plain CQL identifier, got {value!r}")
        return value


class ServicesSettings(BaseModel):
    """The local Kafka and Cassandra that `stream-app services` runs as JVM processes (and,
    when named, the schema registry: its port comes from ``schema_registry.url``).

    Their client ports come from ``kafka.bootstrap_servers`` and ``cassandra.port`` so that the
    servers and their clients can never disagree. With ``cluster`` set, one broker runs per
    bootstrap server and one Cassandra node per contact point (see ``deploy/cluster.env``).
    """

    model_config = _SECTION

    home: Path = Field(
        Path(".stream-app"), description="Folder for jars, data, logs and pid files (git-ignored)."
    )
    java_home: Path | None = Field(
        None,
        description="JDK 17 for the servers (and the registry's build); found on PATH or in "
        "/usr/lib/jvm if unset.",
    )
    cluster: bool = Field(
        False,
        description="Run a replicated cluster instead of one broker and one node: a Kafka "
        "broker (combined with a KRaft controller) per `kafka.bootstrap_servers` entry and a "
        "Cassandra node per `cassandra.contact_points` address (distinct loopback addresses, "
        "all on `cassandra.port`), under <home>/cluster/.",
    )
    kafka_controller_port: int = Field(
        9093,
        description="KRaft controller listener port (cluster: the first broker's; broker n "
        "listens on this port + n - 1).",
    )
    cassandra_storage_port: int = Field(
        7000, description="Cassandra inter-node port (cluster: every node's, on its address)."
    )
    cassandra_jmx_port: int = Field(
        17199,
        description="Cluster only: the first Cassandra node's JMX port on 127.0.0.1 (for "
        "nodetool); node n listens on this port + n - 1. The single node runs no JMX port.",
    )
    kafka_heap_mb: int = Field(768, ge=256, description="Kafka JVM heap, MiB.")
    cassandra_heap_mb: int = Field(1024, ge=512, description="Cassandra JVM heap, MiB.")
    registry_heap_mb: int = Field(256, ge=128, description="Schema registry JVM heap, MiB.")
    start_timeout_s: float = Field(180.0, gt=0, description="Readiness timeout per service.")
    stop_timeout_s: float = Field(60.0, gt=0, description="Wait for exit before SIGKILL.")


class WorkerSettings(BaseModel):
    """The Faust worker process."""

    model_config = _SECTION

    agents: list[Literal["scoring", "features", "accuracy"]] = Field(
        ["scoring", "features", "accuracy"],
        description="Agents this worker runs (run them in separate workers to scale apart).",
    )
    app_id: str = Field("stream-app", description="Faust app id (consumer group prefix).")
    instance_id: str | None = Field(
        None,
        description="This worker's stable name among the workers of one app, e.g. a "
        "StatefulSet pod's name (default: host name and web port). exactly_once: its "
        "transactional ids are derived from it, so a restarted worker fences its predecessor "
        "at once; two live workers must never share it.",
    )
    web_host: str = Field("127.0.0.1", description="Address the web port binds to.")
    web_port: int = Field(6066, description="Web port (metrics, dashboard).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Larger input messages go to dead-letter as oversized."
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6,
        le=300,
        description="A worker that stops heart-beating (killed, frozen) loses its partitions "
        "after this long, in the Faust app's group and in the batch consumers' groups: the "
        "pause a crash causes (Faust's default is 60 s, librdkafka's 45 s). Heartbeats come "
        "from the clients' own threads every third of it.",
    )
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="Liveness: a consumer that finished no batch for this long while work "
        "waited (and no outage was being retried), or stopped polling Kafka, is stalled; the "
        "worker then fails /healthz so a supervisor restarts it.",
    )
    shutdown_timeout_s: float = Field(
        60.0,
        gt=0,
        description="SIGTERM drains (stop fetching, finish the batches in flight, publish "
        "and store their outputs, commit, leave the groups) and exits 0; a drain that takes "
        "longer than this (a server down) is cut short with exit code 70, leaving the "
        "uncommitted batches to be scored again. Keep it below the orchestrator's grace period "
        "(Kubernetes' terminationGracePeriodSeconds).",
    )


class ConsumerSettings(BaseModel):
    """What the three agents' consumers and services share: batching, commits, retries."""

    model_config = _SECTION

    batch_wait_s: float = Field(
        0.02,
        gt=0,
        description="Batch consumer: longest wait for the first message (a batch is what has "
        "arrived, up to the agent's batch_size). Faust agent: longest wait for a batch to fill.",
    )
    commit_interval_s: float = Field(
        0.5,
        ge=0,
        description="Commit finished offsets at most this often (a crash re-processes at most "
        "this much work; each commit is a write to Kafka).",
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First back-off after an outage.")
    retry_max_s: float = Field(10.0, gt=0, description="Longest back-off between retries.")
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: outputs are acknowledged before offsets are committed (a "
        "crash re-scores uncommitted work; copies share a prediction id). exactly_once: each "
        "commit is one Kafka transaction holding the outputs of the batches it commits and "
        "their offsets; read_committed consumers see one copy. Needs the batch consumer.",
    )
    transaction_timeout_s: float = Field(
        30.0,
        ge=1,
        description="exactly_once: the broker aborts a transaction left open this long (a "
        "killed worker's open transaction holds back read_committed readers until then, "
        "unless a worker with the same worker.instance_id starts first and fences it).",
    )


class ScoringSettings(BaseModel):
    """The scoring agent: how it reads client events, its batches, the feature cache."""

    model_config = _SECTION

    consumer: Literal["batch", "faust"] = Field(
        "batch",
        description="How client-events are read: `batch` (confluent-kafka batches inside the "
        "Faust app; several times the throughput) or `faust` (a Faust stream agent).",
    )
    batch_size: int = Field(1000, ge=1, description="Most client events scored together.")
    batches_in_flight: int = Field(
        6, ge=1, description="Batches processed at once (bounds memory and unacknowledged work)."
    )
    feature_cache_ms: int = Field(
        1000,
        ge=0,
        description="Freshness bound of the read-through feature cache, ms (0 turns it off). "
        "A cached feature is at most this much older than a direct read.",
    )
    feature_read_timeout_s: float = Field(
        1.0, gt=0, description="A feature read slower than this counts as missing."
    )
    compiled: bool = Field(
        False,
        description="Score with each model version compiled to native code (lleaves), cached "
        "in <services.home>/compiled and checked against LightGBM's predictions when loaded; "
        "a model that cannot be compiled or differs is scored by LightGBM (a warning and "
        "stream_app_scorer_fallbacks_total). Off: always LightGBM. Also used by replay and "
        "evaluation.",
    )


class AccuracySettings(BaseModel):
    """The accuracy agent: ground truth joined with predictions."""

    model_config = _SECTION

    batch_size: int = Field(1000, ge=1, description="Most labels joined together.")
    label_retry_max_s: float = Field(
        30.0, gt=0, description="Longest wait between two joins of a label still unmatched."
    )


class FeatureSettings(BaseModel):
    """The feature agent: windowed aggregates of sensor readings."""

    model_config = _SECTION

    batch_size: int = Field(5000, ge=1, description="Most readings merged together.")
    batches_in_flight: int = Field(2, ge=1, description="Reading batches processed at once.")
    retention_days: float = Field(
        7.0, gt=0, description="How long panes are kept (point-in-time lookups reach this far)."
    )


class MonitoringSettings(BaseModel):
    """Rolling accuracy, drift thresholds, and waiting for labels."""

    model_config = _SECTION

    accuracy_window_s: float = Field(600, gt=0, description="Rolling accuracy window, seconds.")
    drift_window_s: float = Field(600, gt=0, description="Sliding window of served values, s.")
    psi_threshold: float = Field(
        0.25, gt=0, description="PSI above this raises a drift alarm (0.25: a significant shift)."
    )
    ks_threshold: float = Field(0.25, gt=0, description="KS above this raises a drift alarm.")
    drift_min_values: int = Field(
        500, ge=1, description="No alarm on fewer served values than this in the window."
    )
    drift_min_entities: int = Field(
        30,
        ge=1,
        description="A feature of an entity served for fewer distinct entities in the window "
        "(a dozen zones) is not compared: its PSI and KS are reported as missing.",
    )
    estimate_settle_coverage: float = Field(
        0.9, gt=0, le=1, description="A window's estimate is compared with its realised value "
        "once this share of its predictions has labels (or the use case's label max_delay after "
        "the window ended).",
    )  # fmt: skip
    estimate_publish_s: float = Field(
        60, gt=0, description="Seconds between two publications of the rolling estimates on "
        "the performance-estimates topic (settled windows go with the next one).",
    )  # fmt: skip
    estimate_min_labels: int = Field(
        30, ge=1, description="Fewer labels in a window than this: its estimate is not compared."
    )


class TrainingSettings(BaseModel):
    """`stream-app train`: the training window, LightGBM parameters and the split."""

    model_config = _SECTION

    window_days: float = Field(7.0, gt=0, description="Default window: the last N days.")
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Newest share of the window held out for validation."
    )
    min_rows: int = Field(500, ge=10, description="Fewer labelled rows than this: refuse.")
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_data_in_leaf: int = Field(20, ge=1)
    seed: int = Field(42, description="Seed of LightGBM (training is reproducible).")


class LifecycleSettings(BaseModel):
    """Evaluation policy, A/B split and the orchestrator (retrain, evaluate, promote)."""

    model_config = _SECTION

    primary_metric: str | None = Field(
        None, description="Metric decisions are made on (default: mae, or log_loss for binary)."
    )
    min_improvement: float = Field(
        0.02, ge=0, description="Least relative improvement of the primary metric to promote."
    )
    min_samples: int = Field(500, ge=1, description="Least labelled holdout rows to decide on.")
    significance: float = Field(
        0.05, gt=0, lt=1, description="Paired bootstrap p-value below which a gain is real."
    )
    bootstrap_rounds: int = Field(1000, ge=100, description="Resamples of the paired bootstrap.")
    orchestrator: bool = Field(True, description="Run the orchestrator (on the leader only).")
    check_interval_s: float = Field(30.0, gt=0, description="Seconds between two checks.")
    degradation_factor: float = Field(
        1.5, gt=1, description="Retrain when the rolling primary metric is this many times "
        "worse than the champion's validation figure.",
    )  # fmt: skip
    min_labels: int = Field(
        300, ge=1, description="Least labels in the rolling window to judge the champion."
    )
    degradation_for_s: float = Field(
        300, ge=0, description="Retrain only when degradation (or drift) lasted this long."
    )
    retrain_on_drift: bool = Field(True, description="A drift alarm also starts retraining.")
    retrain_on_no_skill: bool = Field(
        True, description="Retrain a champion whose live skill (against a constant on the same "
        "labels) is at most min_skill, when it had skill on its validation rows or when "
        "no_skill_drift_share of its monitored features drift.",
    )  # fmt: skip
    min_skill: float = Field(
        0.0, lt=1, description="Live skill at or below this is no skill (0: a constant does "
        "as well)."
    )  # fmt: skip
    no_skill_drift_share: float = Field(
        0.5, gt=0, le=1, description="Share of the monitored features whose drift, with no "
        "skill, starts retraining."
    )  # fmt: skip
    act_on_estimates: bool = Field(
        False, description="Also retrain when the performance estimated without labels (CBPE, "
        "DLE) is degraded; the decision records that it acted before the labels.",
    )  # fmt: skip
    schedule_s: float | None = Field(
        None, gt=0, description="Retrain when the champion is older than this (None: never)."
    )
    retrain_window_s: float = Field(
        6 * 3600, gt=0, description="Retraining reads the served data of the last N seconds."
    )
    label_maturity_quantile: float = Field(
        0.9, gt=0, lt=1, description="Retraining leaves out the newest events: those younger "
        "than this quantile of the observed label delays (their labels are mostly missing, "
        "and the ones present are biased to quick outcomes).",
    )  # fmt: skip
    retrain_from_change: bool = Field(
        True, description="After a degradation, train only on the data since the change point "
        "of the champion's error (when one shows), not on the old regime before it.",
    )  # fmt: skip
    retrain_cooldown_s: float = Field(
        600, ge=0, description="Least seconds between two retrainings the orchestrator starts."
    )
    retrain_timeout_s: float = Field(1800, gt=0, description="Longest a retraining may take.")
    auto_retrain: bool = Field(True, description="Start retraining by itself on a trigger.")
    auto_promote: bool = Field(
        True, description="Promote a challenger the policy approves (off: it stays challenger)."
    )


class ReplaySettings(BaseModel):
    """`stream-app replay`: backtests of a topic's time range, and dead-letter reprocessing."""

    model_config = _SECTION

    batch_size: int = Field(20_000, ge=1, description="Most records scored together.")
    log_slack_s: float = Field(
        900,
        ge=0,
        description="How long after the end of the range production may have scored its "
        "events: the prediction log is read this far on for their served vectors.",
    )
    lookup_concurrency: int = Field(
        16, ge=1, description="Point-in-time feature lookups in flight (events with no served "
        "vector).",
    )  # fmt: skip
    label_processes: int = Field(
        2, ge=1, description="Processes reading the labels' topic range, each a share of its "
        "partitions (beside the replay's own process, which reads and scores the events).",
    )  # fmt: skip
    expected_rate: float = Field(
        100_000, gt=0, description="Events per second assumed by `--dry-run`'s time estimate."
    )
    report_buckets: int = Field(
        60, ge=2, description="Most time buckets in the report's charts over the range."
    )
    out_dir: Path = Field(
        Path("replays"), description="Where reports go: <out_dir>/<run id>/report.{json,html}."
    )


class SchemaRegistrySettings(BaseModel):
    """A Confluent-compatible schema registry, and how each topic's values are written.

    Input topics are read as ``json`` (plain JSON, the default), ``wire`` (the Confluent wire
    format: a magic byte and a schema id, then JSON for a JSON Schema or Avro binary for an
    Avro schema) or ``auto`` (either, told apart by the first byte). Outputs are written as
    plain JSON or, with ``outputs = "wire"``, framed with their subject's latest JSON Schema.
    """

    model_config = _SECTION

    url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v6",
        description="The registry's Confluent-compatible API: the local Apicurio Registry's by "
        "default (`services up registry` serves it on this port), http://registry:8081 for "
        "Confluent's or Karapace. Used by `wire`, `auto` and wire outputs, and by `init`.",
    )  # fmt: skip
    username: str | None = Field(None, description="User for the registry's basic auth.")
    password: SecretStr | None = Field(None, description="Password for basic auth (secret).")
    ssl_ca_file: Path | None = Field(None, description="CA bundle for an https registry.")
    timeout_s: float = Field(10, gt=0, description="Timeout of one request to the registry.")
    client_events: Literal["json", "wire", "auto"] = Field(
        "json", description="How client-events values are read."
    )
    sensor_readings: Literal["json", "wire", "auto"] = Field(
        "json", description="How sensor-readings values are read."
    )
    ground_truth: Literal["json", "wire", "auto"] = Field(
        "json", description="How ground-truth values are read."
    )
    outputs: Literal["json", "wire"] = Field(
        "json",
        description="How predictions and accuracy events are written: plain JSON, or framed "
        "with the id of their subject's latest schema (registered by `init`).",
    )  # fmt: skip
    input_schema_type: Literal["JSON", "AVRO"] = Field(
        "JSON",
        description="What `init` registers under the input topics' subjects: the JSON Schemas "
        "or their Avro equivalents (schemas/avro). The worker reads either, whatever is here.",
    )  # fmt: skip
    compatibility: Literal[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
        "FULL_TRANSITIVE", "NONE",
    ] = Field(
        "BACKWARD", description="The compatibility level `init` sets on each subject."
    )  # fmt: skip
    unknown_id_retry_s: float = Field(
        60, gt=0, description="An id the registry did not know is asked for again after this "
        "long (a schema registered late); until then its messages are dead-lettered at once.",
    )  # fmt: skip

    @property
    def in_use(self) -> bool:
        """Whether a topic is read or written in the wire format (`init` then registers the
        project's schemas)."""
        formats = (self.client_events, self.sensor_readings, self.ground_truth, self.outputs)
        return any(form != "json" for form in formats)

    def input_format(self, topic: str) -> Literal["json", "wire", "auto"]:
        """How the input topic ``topic`` (client_events, sensor_readings, ground_truth) is read."""
        value: Literal["json", "wire", "auto"] = getattr(self, topic)
        return value

    def client_config(self) -> dict[str, Any]:
        """confluent-kafka's ``SchemaRegistryClient`` configuration."""
        config: dict[str, Any] = {"url": self.url, "timeout": self.timeout_s}
        if self.username:
            password = self.password.get_secret_value() if self.password else ""
            config["basic.auth.user.info"] = f"{self.username}:{password}"
        if self.ssl_ca_file:
            config["ssl.ca.location"] = str(self.ssl_ca_file)
        return config


class TracingSettings(BaseModel):
    """OpenTelemetry spans per batch and stage, exported over OTLP/HTTP (README "Tracing").
    The W3C ``traceparent`` headers are carried whether or not spans are exported."""

    model_config = _SECTION

    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318 (`/v1/traces` is added "
        "unless the path ends with it); unset: no spans at all. When unset, the standard "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is used.",
    )
    service_name: str = Field("stream-app", min_length=1, description="The spans' service.name.")
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces (batches, events without a traceparent) recorded; "
        "an event's incoming sampled flag decides for its own span.",
    )


class Settings(BaseSettings):
    """All of stream-app's configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    use_case: str = Field(
        "delivery_eta",
        description="The use case this deployment serves: a shipped name or a path to a .toml.",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = Field(default_factory=CassandraSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    accuracy: AccuracySettings = Field(default_factory=AccuracySettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files are named like the variables: STREAM_APP_KAFKA__SASL_PASSWORD.
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets

    def masked(self) -> dict[str, Any]:
        """The configuration as JSON-able data with every secret shown as ``**********``."""
        return self.model_dump(mode="json")


def invalid_settings(exc: ValidationError) -> str:
    """Why the settings are invalid, a line per reason, without the values given (pydantic's
    own message quotes them, and they may be passwords)."""
    return "\n".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def known_variables(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable name that sets a field (sections themselves included)."""
    names = set()
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        names.add(variable)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= known_variables(annotation, f"{variable}__")
    return names


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment, the ``.env`` file and the secrets folder.

    A ``STREAM_APP_*`` variable that names no setting is an error rather than silently
    ignored: a typo in a deployment should not fall back to a default.
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known_variables() | {SECRETS_DIR_VARIABLE}
    )
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}; `stream-app config` lists the settings"
        )
    init: dict[str, Any] = {}
    otel = environ.get(OTEL_TRACES_ENDPOINT) or environ.get(OTEL_ENDPOINT)
    if otel and f"{ENV_PREFIX}TRACING__ENDPOINT" not in environ:
        init["tracing"] = {"endpoint": otel}  # merged with the other tracing settings
    secrets_dir = environ.get(SECRETS_DIR_VARIABLE)
    if secrets_dir:
        return Settings(_secrets_dir=secrets_dir, **init)
    return Settings(**init)
