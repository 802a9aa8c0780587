"""Ignores SIGTERM, and so does the child it starts; prints 'ready <child pid>'."""

import os
import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pause()
    os._exit(0)
print(f"ready {pid}", flush=True)
while True:
    signal.pause()
