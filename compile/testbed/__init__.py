"""A deterministic synthetic capture of the paper's residential IoT lab.

The paper's own records cannot be fetched here, so this package rebuilds a lab of 29
devices (26 that talk to the Internet, 3 local-only) from packet-level models per device
and service, and derives every flow's YAF statistics from those packets. ``generate``
yields one day of pre-NAT biflow records at a time; ``cli`` writes the whole capture.
"""
