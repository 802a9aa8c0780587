"""gafferd: the daemon that runs a :class:`~gaffer.manager.Manager` from a config
file. Builds on the core; the core does not import it."""
