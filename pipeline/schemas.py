"""Every Arrow schema Polyforge writes, declared once.

Each dataset is an Arrow IPC *file* (readable by ``pyarrow.ipc.open_file``, ``polars.read_ipc``
and ``datasets.load_dataset("arrow", ...)``).  Writers import the schema from here; nobody
builds one ad hoc.
"""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "valid", "test")

# Special token ids of every SentencePiece vocabulary Polyforge trains, fixed so that shards, inspect
# and model/ agree without importing the vocab stage.
PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
SPECIAL_PIECES = {PAD: "<pad>", BOS: "<s>", EOS: "</s>", UNK: "<unk>", MASK: "<mask>"}

# Columns shared by every monolingual row, from extraction on.
_MONO_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),  # stable: source/document/block
    pa.field("source", pa.string(), nullable=False),  # config key of the source
    pa.field("lang", pa.string(), nullable=False),  # canonical code (pipeline.langs)
    pa.field("doc_id", pa.string(), nullable=False),  # page, man page, catalog, article
    pa.field("group", pa.string(), nullable=False),  # split group key (pipeline.splits)
    pa.field("split", pa.string(), nullable=False),  # train | valid | test
    pa.field("label", pa.string()),  # a real topic label where the source has one
    pa.field("text", pa.string(), nullable=False),
]

_PAIR_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("src_lang", pa.string(), nullable=False),
    pa.field("tgt_lang", pa.string(), nullable=False),
    pa.field("src_row_id", pa.string(), nullable=False),
    pa.field("tgt_row_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("group", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("src_text", pa.string(), nullable=False),
    pa.field("tgt_text", pa.string(), nullable=False),
]

_LID_FIELDS = [
    pa.field("lid_label", pa.string()),  # top-1 label of the LID model, canonical code
    pa.field("lid_prob", pa.float32()),  # its probability, clipped to 1.0
]

# extracted/{source}/{lang}.arrow
MONOLINGUAL = pa.schema(_MONO_FIELDS, metadata={"polyforge.kind": "monolingual"})

# extracted/{source}/{src}-{tgt}.arrow
PARALLEL = pa.schema(_PAIR_FIELDS, metadata={"polyforge.kind": "parallel"})

# clean/{lang}.arrow
CLEAN = pa.schema(_MONO_FIELDS + _LID_FIELDS, metadata={"polyforge.kind": "clean"})

# rejected/{lang}.arrow: the row as it came in, why it went, and what LID said if it ran.
REJECTED = pa.schema(
    _MONO_FIELDS + [pa.field("reason", pa.string(), nullable=False)] + _LID_FIELDS,
    metadata={"polyforge.kind": "rejected"},
)

# clean/pairs/{src}-{tgt}.arrow
CLEAN_PARALLEL = pa.schema(
    _PAIR_FIELDS
    + [
        pa.field("src_lid_prob", pa.float32()),
        pa.field("tgt_lid_prob", pa.float32()),
    ],
    metadata={"polyforge.kind": "clean_parallel"},
)

# rejected/pairs/{src}-{tgt}.arrow: the pair as it came in, why it went, and what LID said of each side it judged.
REJECTED_PARALLEL = pa.schema(
    _PAIR_FIELDS
    + [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("src_lid_label", pa.string()),  # as lid_label, for the source side
        pa.field("src_lid_prob", pa.float32()),
        pa.field("tgt_lid_label", pa.string()),
        pa.field("tgt_lid_prob", pa.float32()),
    ],
    metadata={"polyforge.kind": "rejected_parallel"},
)

# shards/mlm/{split}/{lang}-{index:05d}.arrow: streams of bptt token ids.
MLM_SHARD = pa.schema(
    [
        pa.field("lang", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    ],
    metadata={"polyforge.kind": "mlm_shard"},
)

# shards/tlm/{split}/{src}-{tgt}-{index:05d}.arrow: parallel pairs of token ids.
TLM_SHARD = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("src_lang", pa.string(), nullable=False),
        pa.field("tgt_lang", pa.string(), nullable=False),
        pa.field("src_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("tgt_ids", pa.list_(pa.int32()), nullable=False),
    ],
    metadata={"polyforge.kind": "tlm_shard"},
)

ALL = {
    "monolingual": MONOLINGUAL,
    "parallel": PARALLEL,
    "clean": CLEAN,
    "rejected": REJECTED,
    "clean_parallel": CLEAN_PARALLEL,
    "rejected_parallel": REJECTED_PARALLEL,
    "mlm_shard": MLM_SHARD,
    "tlm_shard": TLM_SHARD,
}


def kind_of(schema: pa.Schema) -> str | None:
    """The Polyforge kind recorded in a schema's metadata, if any."""
    meta = schema.metadata or {}
    value = meta.get(b"polyforge.kind")
    return value.decode() if value else None
