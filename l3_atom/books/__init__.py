"""Order books from the normalised book topics: the pure engine, exchange checksums, the Faust service."""
