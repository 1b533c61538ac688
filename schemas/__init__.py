"""Record types (raw kinds, normalized event, dead letter), errors, exported JSON Schemas."""
