"""Threat intelligence: feed clients and parsers, the indicator model, index and store."""
