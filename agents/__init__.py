"""Agents of the worker: reassembly of chunks, and the processors that receive whole files.

Importing this package registers them on the app. Add your own processor with
:func:`agents.processing.file_processor`.
"""

from . import directory, reassembly
from .processing import file_processor, registered_processors

__all__ = ["directory", "file_processor", "reassembly", "registered_processors"]
