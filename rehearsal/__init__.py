"""The local rehearsal of a deploy on stand-ins (`make rehearse`): see rehearsal/cli.py."""
