"""filestream: move whole files through Apache Kafka with Faust.

``faust -A app worker`` loads :data:`app`, with its agents, web views and commands.
"""

from .application import FilestreamApp, app

from . import commands, web  # noqa: E402,I001 - register commands and views on the app
import agents  # noqa: E402,F401 - registers the agents

__all__ = ["FilestreamApp", "app"]
