"""The database work of `pulumi up`, as plain Python (no Pulumi): schema migrations, master
rotation and application users, with their typed requests.

The dynamic providers (infra/providers/) parse their inputs into these requests once, at their
edge. The same requests are what an invocation of the in-VPC function carries (no password is
ever part of one), and what the provider runs in its own process when the stack's runner is
`direct`.
"""
