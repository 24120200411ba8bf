"""filestream: move whole files through Apache Kafka with Faust.

``faust -A app worker`` loads :data:`app`; the worker then discovers the agents and web views
(``autodiscover``), so importing ``tables`` or ``agents`` first works too.
"""

from . import commands
from .application import FilestreamApp, app

__all__ = ["FilestreamApp", "app", "commands"]
