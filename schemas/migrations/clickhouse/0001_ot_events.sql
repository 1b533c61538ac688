-- otsec ClickHouse schema, version 1: the normalized events.
-- ReplacingMergeTree keyed by the sorting key, which ends in event_id and whose other parts
-- are derived from the record itself: a replayed or redelivered event leaves one row
-- (after merges, or at once with FINAL). Partitions are days; the sorting key serves
-- per-asset hunting (src_ip first) within time ranges.
CREATE TABLE IF NOT EXISTS ot_events
(
    event_id          String,
    time              DateTime64(6, 'UTC'),
    source_format     LowCardinality(String),
    source_kind       LowCardinality(String),
    observer          LowCardinality(String),
    sensor            LowCardinality(String),
    class_uid         UInt16,
    category_uid      UInt8,
    activity_id       UInt8,
    type_uid          UInt32,
    severity_id       UInt8,
    src_ip            IPv6,
    dst_ip            IPv6,
    src_port          Nullable(UInt16),
    dst_port          Nullable(UInt16),
    transport         LowCardinality(String),
    connection_uid    String,
    app_protocol      LowCardinality(String),
    ics_protocol      LowCardinality(String),
    ics_function      LowCardinality(String),
    ics_function_code Nullable(UInt16),
    ics_operation     LowCardinality(String),
    ics_is_request    Nullable(Bool),
    ics_is_exception  Bool,
    ics_unit_id       Nullable(UInt16),
    ics_address_start Nullable(UInt32),
    ics_address_count Nullable(UInt32),
    ics_subfunction   String,
    ics_status        String,
    detection_rule    String,
    detection_title   String,
    src_asset         String,
    dst_asset         String,
    cti_matches       Array(String),
    risk_score        UInt8,
    message           String,
    details           Map(String, String),
    source_uri        String,
    source_line       Nullable(UInt64),
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX dst_ip_idx dst_ip TYPE bloom_filter GRANULARITY 4,
    INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(time)
ORDER BY (src_ip, time, event_id);
