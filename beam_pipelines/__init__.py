"""Pipeline assemblies, their configuration, and the ``otsec`` command line."""
