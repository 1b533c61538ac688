"""Runner profiles: DirectRunner defaults now, Flink submission with the streaming work."""
