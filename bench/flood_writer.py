"""The writer of workload 6 (``bench/flood.py``). For i = 0, 1, ...: waits for
the file ``<prefix>.<i>`` (checking every 5 ms), then writes blocks of ``size``
bytes (each ending in a newline) to stdout with ``os.write`` as fast as it can
until ``<prefix>.<i>.stop`` exists (checked after every MiB written), and
writes the number of bytes it wrote to ``<prefix>.<i>.count``. It exits if
its parent goes (a daemon or relay killed with the benchmark).

    flood_writer.py PREFIX SIZE
"""

import os
import sys
import time

prefix, size = sys.argv[1], int(sys.argv[2])
block = b"x" * (size - 1) + b"\n"
per_check = max(1, (1 << 20) // size)
parent = os.getppid()
i = 0
while True:
    while not os.path.exists(f"{prefix}.{i}"):
        if os.getppid() != parent:
            sys.exit(0)
        time.sleep(0.005)
    written = 0
    while not os.path.exists(f"{prefix}.{i}.stop"):
        for _ in range(per_check):
            os.write(1, block)
        written += per_check * size
    with open(f"{prefix}.{i}.tmp", "w") as f:
        f.write(str(written))
    os.rename(f"{prefix}.{i}.tmp", f"{prefix}.{i}.count")
    i += 1
