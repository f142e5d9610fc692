"""The error codes of dead-letter records, one per way a message can be refused."""

from __future__ import annotations

EMPTY_MESSAGE = "empty_message"
OVERSIZED = "oversized"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
TOO_DEEP = "too_deep"
NON_FINITE_NUMBER = "non_finite_number"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_VALUE = "invalid_value"
MISSING_ENTITY = "missing_entity"
MISSING_FEATURES = "missing_features"
# the Confluent wire format (topics read as `wire` or `auto`)
BAD_MAGIC_BYTE = "bad_magic_byte"
UNKNOWN_SCHEMA_ID = "unknown_schema_id"
SCHEMA_MISMATCH = "schema_mismatch"
INVALID_AVRO = "invalid_avro"

ALL_CODES = (
    EMPTY_MESSAGE,
    OVERSIZED,
    INVALID_UTF8,
    INVALID_JSON,
    TOO_DEEP,
    NON_FINITE_NUMBER,
    NOT_AN_OBJECT,
    UNKNOWN_SCHEMA_VERSION,
    MISSING_FIELD,
    WRONG_TYPE,
    INVALID_VALUE,
    MISSING_ENTITY,
    MISSING_FEATURES,
    BAD_MAGIC_BYTE,
    UNKNOWN_SCHEMA_ID,
    SCHEMA_MISMATCH,
    INVALID_AVRO,
)
