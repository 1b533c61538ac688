-- otsec ClickHouse schema, version 2: what stages 5-7 add to each event. The asset names
-- (src_asset, dst_asset), cti_matches and risk_score columns exist since version 1.
ALTER TABLE ot_events
    ADD COLUMN IF NOT EXISTS src_role LowCardinality(String) AFTER dst_asset,
    ADD COLUMN IF NOT EXISTS dst_role LowCardinality(String) AFTER src_role,
    ADD COLUMN IF NOT EXISTS src_zone LowCardinality(String) AFTER dst_role,
    ADD COLUMN IF NOT EXISTS dst_zone LowCardinality(String) AFTER src_zone,
    ADD COLUMN IF NOT EXISTS zone_crossing Bool DEFAULT false AFTER dst_zone,
    ADD COLUMN IF NOT EXISTS unknown_asset Bool DEFAULT false AFTER zone_crossing,
    ADD COLUMN IF NOT EXISTS cti_max_confidence UInt8 DEFAULT 0 AFTER cti_matches,
    ADD COLUMN IF NOT EXISTS rule_ids Array(LowCardinality(String)) AFTER risk_score;
