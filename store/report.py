"""Plain-text tables for the command line: one row per record, times in UTC."""

from store.page import when

TIME_COLUMNS = {
    "first_seen",
    "last_seen",
    "detected",
    "window_start",
    "window_end",
    "since",
    "trust_window_end",
}
HIDDEN_COLUMNS = {"counters"}


def cell(name: str, value) -> str:
    """One value as text: times as UTC, floats with 3 decimals, gaps compactly."""
    if value is None:
        return "-"
    if name in TIME_COLUMNS:
        return when(value)
    if name == "gaps":
        return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in value) or "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(rows: list[dict]) -> str:
    """Rows as aligned columns under a header; "(none)" when empty."""
    if not rows:
        return "(none)"
    names = [name for name in rows[0] if name not in HIDDEN_COLUMNS]
    cells = [[cell(name, row[name]) for name in names] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(names)]
    lines = ["  ".join(name.ljust(w) for name, w in zip(names, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)
