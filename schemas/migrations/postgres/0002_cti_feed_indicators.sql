-- otsec PostgreSQL schema, version 2: what each feed contributes to the indicator store.
-- cti_indicators is derived from these rows (the merge across feeds: highest confidence,
-- every source, the stricter TLP, the widest validity), so that a feed that drops an
-- indicator from its full list takes only its own contribution away.
CREATE TABLE IF NOT EXISTS cti_feed_indicators (
    feed           text        NOT NULL,
    indicator_type text        NOT NULL,
    value          text        NOT NULL,
    confidence     smallint    NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    tlp            text        NOT NULL,
    valid_from     timestamptz,
    valid_until    timestamptz,
    revoked        boolean     NOT NULL DEFAULT false,
    reference      text,
    tags           text[]      NOT NULL DEFAULT '{}',
    techniques     text[]      NOT NULL DEFAULT '{}',
    seen_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, indicator_type, value)
);
CREATE INDEX IF NOT EXISTS cti_feed_indicators_key ON cti_feed_indicators (indicator_type, value);
