"""The ``gaffer`` command-line client (talks to gafferd only through gaffer.client)."""
