"""The platform's services. Importing the package first tunes Polars' allocator (see below).

Polars' allocator (jemalloc) gives each thread its pick of eight arenas on two cores and hands
memory back to the system within half a second, so every frame of a large ingest is fresh
memory: at 100,000 subjects nearly a fifth of the ingest's CPU time was the kernel zeroing and
mapping pages. With one arena (memory one thread frees is what the next frame reuses) and a
one-second decay, the same ingest took 5-10% less wall time for the same peak (~1.2 GB) in
alternated runs on two cores (bench/HISTORY.md). A ``_RJEM_MALLOC_CONF`` set by the user is
kept as it is. The setting reaches Polars only if it is imported after this package, which is
how every entry point (``tract``, the web server, the services, the DAGs) starts.
"""

import os

POLARS_ALLOCATOR = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:2000"
os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)
