"""Feed parsers: feed documents in; canonical indicators, skipped counts and dead letters out.

One module per format (STIX bundles, TAXII collections, MISP feeds, CSV and
plain lists, CISA KEV). Each parser is a plain function over bytes that fills a
`Collector`, so unit tests and the refresh job call the same code.
"""

from cti.parsers._common import STAGE, Collector, ParseContext, parse_time
from cti.parsers.csvlist import guess_type, parse_csv
from cti.parsers.kev import parse_kev
from cti.parsers.misp import MISP_TYPES, manifest_events, parse_misp_event
from cti.parsers.stix import (
    TLP_MARKING_DEFINITIONS,
    StixDocument,
    decode_bundle,
    parse_stix,
    reduce_pattern,
)
from cti.parsers.taxii import TaxiiCollection, fetch_collection

__all__ = [
    "MISP_TYPES",
    "STAGE",
    "TLP_MARKING_DEFINITIONS",
    "Collector",
    "ParseContext",
    "StixDocument",
    "TaxiiCollection",
    "decode_bundle",
    "fetch_collection",
    "guess_type",
    "manifest_events",
    "parse_csv",
    "parse_kev",
    "parse_misp_event",
    "parse_stix",
    "parse_time",
    "reduce_pattern",
]
