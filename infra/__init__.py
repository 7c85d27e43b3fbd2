"""The Pulumi components of the appdb stack (wired in __main__.py; see docs/infrastructure.md)."""
