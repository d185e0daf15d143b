"""Central store: authenticated ingest of agent summaries, queries and a web page."""
