"""Status web views of a worker (JSON), next to Faust's own ``/`` and ``/table/`` views."""

from __future__ import annotations

from faust.web import Request, Response, View

from tables import finished_files, partial_files
from tables.chunkset import count

from .application import app

__all__ = ["StatusView"]


@app.page("/filestream/status/")
class StatusView(View):
    """Counters, assigned partitions and the uploads this worker is reassembling."""

    async def get(self, request: Request) -> Response:
        tps = sorted((tp for tp in app.assignor.assigned_actives() if tp.topic == app.settings.chunk_topic),
                     key=lambda tp: tp.partition)
        active = [tp.partition for tp in tps]
        files = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == app.settings.files_topic)
        partials = [
            {"relpath": rec.relpath, "state": rec.state, "chunks": f"{count(rec.received)}/{rec.total}",
             "bytes_received": rec.bytes_received, "partition": rec.partition, "first_offset": rec.first_offset,
             "holder": rec.holder, "updated_at": rec.updated_at}
            for rec in partial_files.values() if rec.partition in active
        ]
        return self.json({
            "worker": app.conf.id,
            "staging_holder": app.staging.holder,
            "active_partitions": active,
            "files_partitions": files,  # co-partitioned: equal to active_partitions once assigned
            # the lowest offset each partition's commit may reach while uploads are unfinished
            "commit_floors": {tp.partition: app.offset_floors.floor(tp) for tp in tps},
            "counters": app.stats.snapshot(),
            "partial_files": partials,
            "finished_files": sum(1 for rec in finished_files.values() if rec.partition in active),
        })
