"""Echoes what it reads on fd 3 (a custom stream) back to fd 3, upper-cased."""

import os

os.write(3, b"hello on fd 3\n")
while True:
    data = os.read(3, 4096)
    if not data:
        break
    os.write(3, data.upper())
