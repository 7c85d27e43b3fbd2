"""Pulumi dynamic providers: thin adapters from Pulumi's resource lifecycle to plain-Python logic.

Importing this package must have no side effects (no resources declared, no clients created):
Pulumi's provider host imports the provider's module by name when it unpickles a provider.
"""
