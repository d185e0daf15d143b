"""A compact C library for a Treelite forest, scored in blocks of rows tree by tree.

TL2cgen turns every node into an ``if`` in straight-line code: for a bounded 100-tree
forest that is megabytes of instructions, and a row evaluated against it misses the
instruction cache at every tree. This generator keeps the forest as data instead:

- each feature's split thresholds are sorted once; a row's features are first turned into
  bin numbers (a binary search per feature), so every node test is one integer compare
  that is exact (``x <= t_k`` holds exactly when ``bin(x) <= k``);
- nodes are 8 bytes (feature, threshold bin, first child) with the two children stored
  next to each other, so the walk picks the child without a branch;
- leaves are float32 class-probability rows;
- rows are scored in blocks, tree by tree, so one tree stays in cache for the whole block.

The library's C interface (``ABI``, version 1) has the batch entry point and the shape
queries of the TL2cgen libraries that ``compile.build`` makes, so the agent's predictor
loads either::

    int32_t iotwatch_abi_version(void);
    int32_t iotwatch_num_tree(void);
    int32_t get_num_target(void);
    int32_t get_num_feature(void);
    void    get_num_class(int32_t *out);
    void    iotwatch_predict_batch(const float *rows, int64_t n_rows, double *proba);

``proba`` receives ``n x num_class`` probabilities: the mean of the trees' leaf vectors,
as scikit-learn's ``predict_proba``. Inputs are float32, as scikit-learn compares them.
"""

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ABI = "iotwatch-forest-1"
ABI_VERSION = 1
LEAF = 0xFFFF
BLOCK_ROWS = 64


@dataclass
class FlatForest:
    """The forest as arrays: what the generated C holds, also handy for tests."""

    num_feature: int
    num_class: int
    thresholds: list[np.ndarray]  # per feature, sorted unique float64
    node_feature: np.ndarray  # uint16, LEAF for leaves
    node_bin: np.ndarray  # uint16
    node_child: np.ndarray  # uint32: left child index (right = left + 1), or leaf row
    roots: np.ndarray  # uint32, one per tree
    leaves: np.ndarray  # float32 (n_leaves, num_class)


def flatten(model_json: dict) -> FlatForest:
    """Lay out a Treelite model (its JSON dump) as compact arrays.

    Only what a scikit-learn random forest exports is accepted: numerical ``<=`` tests and
    leaf vectors averaged over the trees; anything else raises ``ValueError``.
    """
    if model_json.get("task_type") != "kMultiClf" or not model_json.get("average_tree_output"):
        raise ValueError("only averaged multi-class forests (scikit-learn's) are supported")
    num_feature = int(model_json["num_feature"])
    num_class = int(model_json["num_class"][0])
    trees = model_json["trees"]

    per_feature: list[set] = [set() for _ in range(num_feature)]
    for tree in trees:
        for node in tree["nodes"]:
            if "leaf_value" not in node:
                if node.get("comparison_op") != "<=":
                    raise ValueError(f"unsupported comparison {node.get('comparison_op')}")
                per_feature[node["split_feature_id"]].add(float(node["threshold"]))
    thresholds = [np.array(sorted(s), dtype=np.float64) for s in per_feature]
    if max((len(t) for t in thresholds), default=0) >= LEAF:
        raise ValueError("more than 65534 distinct thresholds on one feature")

    feature, bins, child, roots, leaves = [], [], [], [], []
    for tree in trees:
        nodes = {n["node_id"]: n for n in tree["nodes"]}
        base = len(feature)
        roots.append(base)
        # Breadth-first, children placed as adjacent pairs.
        order, slot = [0], {0: base}
        feature.append(0)
        bins.append(0)
        child.append(0)
        for node_id in order:
            node = nodes[node_id]
            at = slot[node_id]
            if "leaf_value" in node:
                value = np.asarray(node["leaf_value"], dtype=np.float64)
                if value.shape != (num_class,):
                    raise ValueError(f"leaf {node_id} has {value.shape} outputs")
                feature[at], bins[at], child[at] = LEAF, 0, len(leaves)
                leaves.append(value)
                continue
            f = node["split_feature_id"]
            k = int(np.searchsorted(thresholds[f], float(node["threshold"])))
            first = len(feature)
            feature += [0, 0]
            bins += [0, 0]
            child += [0, 0]
            slot[node["left_child"]], slot[node["right_child"]] = first, first + 1
            order += [node["left_child"], node["right_child"]]
            feature[at], bins[at], child[at] = f, k, first

    return FlatForest(
        num_feature=num_feature,
        num_class=num_class,
        thresholds=thresholds,
        node_feature=np.array(feature, dtype=np.uint16),
        node_bin=np.array(bins, dtype=np.uint16),
        node_child=np.array(child, dtype=np.uint32),
        roots=np.array(roots, dtype=np.uint32),
        leaves=np.array(leaves, dtype=np.float32).reshape(-1, num_class),
    )


def from_treelite(model) -> FlatForest:
    """Flatten a ``treelite.Model``."""
    return flatten(json.loads(model.dump_as_json(pretty_print=False)))


def _array(ctype: str, name: str, values, fmt) -> str:
    items = [fmt(v) for v in values] or ["0"]
    lines = [",".join(items[i : i + 12]) for i in range(0, len(items), 12)]
    return f"static const {ctype} {name}[] = {{\n" + ",\n".join(lines) + "\n};\n"


def _float_literal(value) -> str:
    text = f"{float(value):.9g}"
    if "." not in text and "e" not in text and "n" not in text:
        text += ".0"
    return text + "f"


def _double_literal(value) -> str:
    text = repr(float(value))
    return text if text not in ("inf", "-inf") else ("HUGE_VAL" if text == "inf" else "-HUGE_VAL")


def generate_c(forest: FlatForest) -> str:
    """The whole library as one C translation unit."""
    offsets = np.cumsum([0] + [len(t) for t in forest.thresholds])
    all_thresholds = np.concatenate(forest.thresholds + [np.zeros(0)])
    # In C a leaf tests a bin that is always 0 against 0xFFFF and points at itself.
    is_leaf = forest.node_feature == LEAF
    feature = np.where(is_leaf, forest.num_feature, forest.node_feature).astype(np.uint64)
    bins = np.where(is_leaf, 0xFFFF, forest.node_bin).astype(np.uint64)
    child = np.where(is_leaf, np.arange(len(is_leaf)), forest.node_child).astype(np.uint64)
    leaf_row = np.where(is_leaf, forest.node_child, 0)
    packed = feature | (bins << 16) | (child << 32)
    parts = [
        "/* Generated by compile/forestc.py: a random forest as data. */\n",
        "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n",
        f"#define NF {forest.num_feature}\n#define NC {forest.num_class}\n",
        f"#define NT {len(forest.roots)}\n#define BLOCK {BLOCK_ROWS}\n#define LEAF {LEAF}\n\n",
        _array("double", "THR", all_thresholds, _double_literal),
        _array("uint32_t", "THR_OFF", offsets, lambda v: str(int(v))),
        _array("uint64_t", "NODE", packed, lambda v: f"{int(v)}u"),
        _array("uint32_t", "LEAFROW", leaf_row, lambda v: str(int(v))),
        _array("uint32_t", "ROOT", forest.roots, lambda v: str(int(v))),
        _array("float", "LEAFV", forest.leaves.ravel(), _float_literal),
        _C_BODY,
    ]
    return "".join(parts)


_C_BODY = r"""
int32_t iotwatch_abi_version(void) { return 1; }
int32_t iotwatch_num_tree(void) { return NT; }
int32_t get_num_target(void) { return 1; }
int32_t get_num_feature(void) { return NF; }
void get_num_class(int32_t *out) { out[0] = NC; }

/* First threshold index >= x: the row's bin for this feature. The search halves with a
   conditional move, not a branch: which half holds x is a coin toss a branch predictor
   gets wrong half of the time (NaN compares false: bin 0). */
static uint16_t bin_of(int f, double x) {
    const double *first = THR + THR_OFF[f], *base = first;
    uint32_t n = THR_OFF[f + 1] - THR_OFF[f];
    if (n == 0) return 0;
    while (n > 1) {
        uint32_t half = n >> 1;
        base = base[half] < x ? base + half : base;
        n -= half;
    }
    return (uint16_t)(base - first + (*base < x));
}

/* Lanes walked in lockstep: rows of a block down one tree, or trees for a lone row. */
#define GROUP 16
#define TREE_GROUP 8

/* One row down one tree. A leaf tests a bin that is always 0 against 0xFFFF and points
   at itself, so the walk ends when the index stops changing. */
static uint32_t walk(uint32_t i, const uint16_t *bins) {
    for (;;) {
        uint64_t n = NODE[i];
        uint32_t f = (uint32_t)(n & 0xFFFF), k = (uint32_t)((n >> 16) & 0xFFFF);
        uint32_t next = (uint32_t)(n >> 32) + (bins[f] > k);
        if (next == i) return LEAFROW[i];
        i = next;
    }
}

/* GROUP rows down one tree in lockstep: their chains of loads overlap in the memory
   system, and rows that reach a leaf early wait there for the others. */
static void walk_group(uint32_t root, const uint16_t (*bins)[NF + 1], uint32_t *at) {
    uint32_t i[GROUP];
    for (int g = 0; g < GROUP; g++) i[g] = root;
    for (;;) {
        uint32_t moved = 0;
        for (int g = 0; g < GROUP; g++) {
            uint64_t n = NODE[i[g]];
            uint32_t f = (uint32_t)(n & 0xFFFF), k = (uint32_t)((n >> 16) & 0xFFFF);
            uint32_t next = (uint32_t)(n >> 32) + (bins[g][f] > k);
            moved |= next ^ i[g];
            i[g] = next;
        }
        if (!moved) break;
    }
    for (int g = 0; g < GROUP; g++) at[g] = LEAFROW[i[g]];
}

/* One row down TREE_GROUP trees in lockstep: the same overlap for a lone row. */
static void walk_trees(int t0, const uint16_t *bins, uint32_t *at) {
    uint32_t i[TREE_GROUP];
    for (int g = 0; g < TREE_GROUP; g++) i[g] = ROOT[t0 + g];
    for (;;) {
        uint32_t moved = 0;
        for (int g = 0; g < TREE_GROUP; g++) {
            uint64_t n = NODE[i[g]];
            uint32_t f = (uint32_t)(n & 0xFFFF), k = (uint32_t)((n >> 16) & 0xFFFF);
            uint32_t next = (uint32_t)(n >> 32) + (bins[f] > k);
            moved |= next ^ i[g];
            i[g] = next;
        }
        if (!moved) break;
    }
    for (int g = 0; g < TREE_GROUP; g++) at[g] = LEAFROW[i[g]];
}

static void add_leaf(float *acc, uint32_t leaf_row) {
    const float *leaf = &LEAFV[(uint64_t)leaf_row * NC];
    for (int c = 0; c < NC; c++) acc[c] += leaf[c];
}

void iotwatch_predict_batch(const float *rows, int64_t n, double *proba) {
    uint16_t bins[BLOCK][NF + 1];
    float acc[BLOCK][NC];
    uint32_t at[GROUP];
    for (long start = 0; start < n; start += BLOCK) {
        int m = (n - start) < BLOCK ? (int)(n - start) : BLOCK;
        int grouped = m - m % GROUP;
        for (int r = 0; r < m; r++) {
            for (int f = 0; f < NF; f++)
                bins[r][f] = bin_of(f, (double)rows[(start + r) * NF + f]);
            bins[r][NF] = 0;
        }
        memset(acc, 0, sizeof(float) * NC * m);
        for (int t = 0; t < NT; t++) {
            for (int r = 0; r < grouped; r += GROUP) {
                walk_group(ROOT[t], &bins[r], at);
                for (int g = 0; g < GROUP; g++) add_leaf(acc[r + g], at[g]);
            }
        }
        for (int r = grouped; r < m; r++) {
            int t = 0;
            for (; t + TREE_GROUP <= NT; t += TREE_GROUP) {
                walk_trees(t, bins[r], at);
                for (int g = 0; g < TREE_GROUP; g++) add_leaf(acc[r], at[g]);
            }
            for (; t < NT; t++) add_leaf(acc[r], walk(ROOT[t], bins[r]));
        }
        for (int r = 0; r < m; r++)
            for (int c = 0; c < NC; c++)
                proba[(start + r) * NC + c] = (double)acc[r][c] / NT;
    }
}
"""


def build_library(c_source: Path, out: Path, *, cc: str = "gcc", opt: str = "-O2") -> Path:
    """Compile the generated C into a shared library with ``cc`` (a cross gcc works too)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, opt, "-shared", "-fPIC", "-o", str(out), str(c_source), "-lm"]
    log.info("building %s: %s", out, " ".join(cmd))
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cc} failed on {c_source}:\n{proc.stderr[-4000:]}")
    return out


def predict_reference(forest: FlatForest, rows: np.ndarray) -> np.ndarray:
    """The same computation in numpy: a check on the layout, independent of the C."""
    rows = np.asarray(rows, dtype=np.float32)
    bins = np.stack(
        [
            np.searchsorted(forest.thresholds[f], rows[:, f].astype(np.float64), side="left")
            for f in range(forest.num_feature)
        ],
        axis=1,
    )
    acc = np.zeros((len(rows), forest.num_class), dtype=np.float64)
    for root in forest.roots:
        i = np.full(len(rows), root, dtype=np.int64)
        while True:
            f = forest.node_feature[i]
            inner = f != LEAF
            if not inner.any():
                break
            go_right = bins[np.arange(len(rows)), np.where(inner, f, 0)] > forest.node_bin[i]
            i = np.where(inner, forest.node_child[i].astype(np.int64) + go_right, i)
        acc += forest.leaves[forest.node_child[i]]
    return acc / len(forest.roots)
