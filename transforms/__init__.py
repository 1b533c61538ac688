"""The stages of the event pipeline, one `PTransform` per module, with sources and sinks."""
