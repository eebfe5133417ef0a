"""Checkpoints in their sources' own formats, read and written as suite checkpoints:

- ``mpdit_authors``: the MPDiT authors' train.py checkpoints;
- ``sit``: SiT's released EMA state dict and train.py checkpoints;
- ``ppflow``: PPFlow's released state dicts and train.py checkpoints;
- ``common``: the safe read, the refusals, the key and shape check, the time-direction and sign rewrites;
- ``importer``: recognise the format and the source, read the architecture, check, convert, write.
"""

from mpdit_bench.imports.common import ImportRefused
from mpdit_bench.imports.importer import FORMATS, SOURCES, import_checkpoint, write_suite_checkpoint

__all__ = ["FORMATS", "ImportRefused", "SOURCES", "import_checkpoint", "write_suite_checkpoint"]
