"""Flow meter: pcap/pcapng captures -> the biflow records YAF 2.16 writes with
``--flow-stats --mac``. ``meter_pcap`` is the library call; ``cli`` the command."""

from compile.meter.meter import iter_meter, meter_pcap

__all__ = ["iter_meter", "meter_pcap"]
