"""Edge agent: IPFIX in, per-home IoT inventories and trust summaries out."""

__version__ = "0.1.0"
