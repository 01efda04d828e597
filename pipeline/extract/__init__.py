"""The extract stage: raw source files → monolingual and parallel Arrow rows.

``extract_source`` reads ``raw/{source}/`` (what the download stage fetched) and writes
``extracted/{source}/``: ``{lang}.arrow`` (schemas.MONOLINGUAL) per configured language with rows,
``{src}-{tgt}.arrow`` (schemas.PARALLEL) per configured pair with rows, and ``extract_stats.json``
(rows per output, documents per language, dropped blocks and skipped files by reason, warnings).
The whole folder is built beside the target and renamed into place, so it is complete or absent.
One module per format; each has ``extract(ctx, raw_dir, out, threads)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.arrow_io import write_json
from pipeline.extract import fortune, freedict, gettext, libreoffice, man, plain, udhr
from pipeline.extract.common import STATS_FILE, OutputSet, SourceContext, staged_directory
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)

Extractor = Callable[[SourceContext, Path, OutputSet, int], None]

EXTRACTORS: dict[str, Extractor] = {
    "libreoffice_help": libreoffice.extract,
    "gettext": gettext.extract,
    "man": man.extract,
    "fortune": fortune.extract,
    "udhr": udhr.extract,
    "freedict": freedict.extract,
    "text": plain.extract,
    "jsonl": plain.extract,
    "parquet": plain.extract,
}


def extract_source(
    cfg: dict[str, Any],
    source_name: str,
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Extract one configured source from ``raw_dir`` into ``out_dir``; return the stats written.

    ``cfg`` needs ``sources.{source_name}``, the language codes (a list or the ``languages`` mapping),
    ``pivot`` and ``splits``: what ``pipeline.config.extract_slice`` gives the rule.
    """
    if source_name not in cfg["sources"]:
        raise KeyError(f"config key 'sources.{source_name}': no such source")
    fmt = cfg["sources"][source_name]["format"]
    raw_dir = Path(raw_dir)
    with stage_logging(log):
        if not raw_dir.is_dir():
            raise FileNotFoundError(f"{raw_dir}: raw folder of source {source_name!r} does not exist")
        LOG.info("extract %s (%s) from %s", source_name, fmt, raw_dir)
        ctx = SourceContext(cfg, source_name)
        ctx.stats.root = str(raw_dir)
        with staged_directory(out_dir) as tmp:
            with OutputSet(tmp, ctx) as out:
                EXTRACTORS[fmt](ctx, raw_dir, out, max(1, int(threads)))
            stats = ctx.stats.to_dict(out.rows())
            write_json(tmp / STATS_FILE, stats)
        LOG.info("extract %s: rows %s; dropped %s; skipped %s; %d warning(s)", source_name, stats["rows"],
                    stats["dropped"], stats["skipped"], stats["warning_count"])
        return stats
