"""``[server] workers = N``: N processes behind the same listeners, behaving as one server.

docs/architecture.md ("Workers") has the design.  The parts:

- ``supervisor``: the twistd process.  It binds every listener once, starts N worker processes
  that inherit the listening sockets, keeps the stream directory, restarts a worker that dies
  (with backoff) and drains them all on SIGTERM.
- ``worker``: one worker process (``python -m rtmpserver.workers.worker``): the usual server
  (hub, handler chains, factories) on the adopted listeners, plus a private Unix-socket RTMP
  listener other workers relay from and a Unix-socket HTTP listener they forward HLS to.
- ``directory``: ``IStreamDirectory`` (app/name -> worker) in-process and over AMP.
- ``relays``: on-demand RTMP relays between workers (a player here, the publisher there).
- ``aggregate``: /stat, /api/v1 and /metrics for all workers at once.
"""
