"""Record types (raw input kinds, normalized event, dead letter), errors and exported JSON Schemas."""
