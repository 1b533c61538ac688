-- otsec PostgreSQL schema, version 1: triage (alerts), inventory (assets), threat
-- intelligence (cti_indicators, cti_feeds) and the dead-letter store.

CREATE TABLE IF NOT EXISTS dead_letters (
    id               text        PRIMARY KEY,          -- deterministic: stage, source, payload
    stage            text        NOT NULL,
    error_class      text        NOT NULL,
    message          text        NOT NULL,
    field            text,
    payload          bytea       NOT NULL,             -- the original bytes, byte for byte
    context          text,                             -- Zeek header a TSV line needs
    source           jsonb       NOT NULL,             -- file and line, or stream position
    record_kind      text,
    traceback        text,
    attempts         integer     NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    retriable        boolean     NOT NULL,
    failed_at        timestamptz NOT NULL,
    replayed_at      timestamptz,
    pipeline_version text        NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_pending
    ON dead_letters (stage, error_class, failed_at) WHERE replayed_at IS NULL;

CREATE TABLE IF NOT EXISTS alerts (
    alert_id          text        PRIMARY KEY,         -- deterministic: rule, entities, time bucket
    rule_id           text        NOT NULL,
    title             text        NOT NULL,
    description       text,
    attack_techniques text[]      NOT NULL DEFAULT '{}',
    severity          text        NOT NULL
        CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    risk_score        smallint    NOT NULL CHECK (risk_score BETWEEN 0 AND 100),
    src_ip            inet,
    dst_ip            inet,
    event_count       bigint      NOT NULL CHECK (event_count >= 1),
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    status            text        NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'acknowledged', 'investigating', 'resolved', 'false_positive')),
    sample_event_ids  text[]      NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (status, risk_score DESC, last_seen DESC);

CREATE TABLE IF NOT EXISTS assets (
    address      cidr        PRIMARY KEY,              -- an address (/32, /128) or a network
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('plc', 'rtu', 'safety_controller', 'hmi',
                     'engineering_workstation', 'historian', 'it_host', 'network_device', 'other')),
    purdue_level smallint    NOT NULL CHECK (purdue_level BETWEEN 0 AND 5),
    zone         text        NOT NULL,
    criticality  smallint    NOT NULL CHECK (criticality BETWEEN 1 AND 5),
    vendor       text,
    model        text,
    firmware     text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cti_indicators (
    indicator_type text        NOT NULL,
    value          text        NOT NULL,               -- canonical form
    confidence     smallint    NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    tlp            text        NOT NULL DEFAULT 'clear',
    valid_from     timestamptz,
    valid_until    timestamptz,
    revoked        boolean     NOT NULL DEFAULT false,
    sources        jsonb       NOT NULL DEFAULT '[]',  -- [{"feed": ..., "reference": ...}]
    tags           text[]      NOT NULL DEFAULT '{}',
    techniques     text[]      NOT NULL DEFAULT '{}',
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (indicator_type, value)
);
CREATE INDEX IF NOT EXISTS cti_indicators_valid ON cti_indicators (valid_until) WHERE NOT revoked;

CREATE TABLE IF NOT EXISTS cti_feeds (
    name            text        PRIMARY KEY,
    feed_type       text        NOT NULL,
    url             text,
    etag            text,
    last_modified   text,
    cursor          text,                              -- TAXII added_after
    last_run_at     timestamptz,
    last_success_at timestamptz,
    last_status     text,
    last_error      text,
    indicators      integer     NOT NULL DEFAULT 0
);
