"""Process states and the transitions allowed between them.

Import-free on purpose: the HTTP layer, the CLI and the tests can read the state
names without pulling in the process machinery.

A process object is one OS process: it is born ``starting`` and ends in one of the
terminal states. A restart never revives a process object; its slot gets a new
process with a new internal pid. The terminal state says what happened to the slot:

- ``exited``: it ended and either will not be replaced or is replaced at once;
- ``backoff``: it ended too soon (or its slot is flapping); a replacement is due later;
- ``fatal``: its slot gave up; nothing restarts it until the job is started again.
"""

STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
EXITED = "exited"
BACKOFF = "backoff"
FATAL = "fatal"

ALL_STATES = (STARTING, RUNNING, STOPPING, EXITED, BACKOFF, FATAL)
ALIVE_STATES = frozenset({STARTING, RUNNING, STOPPING})
TERMINAL_STATES = frozenset({EXITED, BACKOFF, FATAL})

# from-state -> the states it may move to; nothing else may happen.
TRANSITIONS: dict[str, frozenset[str]] = {
    STARTING: frozenset({RUNNING, STOPPING, EXITED, BACKOFF, FATAL}),
    RUNNING: frozenset({STOPPING, EXITED, BACKOFF, FATAL}),
    STOPPING: frozenset({EXITED}),
    EXITED: frozenset(),
    BACKOFF: frozenset(),
    FATAL: frozenset(),
}
