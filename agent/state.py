"""The inventories kept across restarts: saved at shutdown, read back at start.

Without it, every restart would forget which device types each home has and report
them all again as new detections, with hit-times measured from the restart. The file
(``inventory.npz`` beside the spool) holds the home blocks in slot order and the
first-seen, detected and hit-flow tables with their class names; home ids are not
stored but recomputed, and types the running bundle lacks are dropped. A file written
with other home block sizes, or unreadable, is ignored with a warning. Trust counts
are not kept: shutdown closes the open window and reports it.
"""

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILE = "inventory.npz"


def save_state(folder: Path, homes, inventory) -> Path:
    """Write the homes and their inventories atomically (temp file, fsync, rename)."""
    path = Path(folder) / FILE
    n = len(homes)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            blocks=homes.blocks(),
            lengths=np.array([homes.length_v4, homes.length_v6]),
            classes=np.array(inventory.classes),
            first_seen=inventory.first_seen[:n],
            detected=inventory.detected[:n],
            hit_flow=inventory.hit_flow[:n],
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_state(folder: Path, homes, inventory) -> int:
    """Restore saved homes and inventories into empty ones; the number of homes restored."""
    path = Path(folder) / FILE
    if not path.exists():
        return 0
    try:
        with np.load(path) as saved:
            data = {key: saved[key] for key in saved.files}
        blocks = data["blocks"].astype(np.uint64).reshape(-1, 2)
        lengths = data["lengths"].tolist()
        classes = data["classes"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        log.warning("inventory state %s unreadable, starting empty: %s", path, exc)
        return 0
    if lengths != [homes.length_v4, homes.length_v6]:
        log.warning("inventory state %s has other home block sizes; starting empty", path)
        return 0
    blocks = blocks[: homes.max_homes]
    n = len(blocks)
    homes.restore(blocks)
    inventory.restore(classes, data["first_seen"][:n], data["detected"][:n], data["hit_flow"][:n])
    log.info("inventory state restored: %d homes from %s", n, path)
    return n
