"""The providers' HTTP APIs: one client per provider API, with one transport and retry policy
(:mod:`alerthooks.apis.http`), the env variables that reach them, and the reads both sides use.

The receiver side (:mod:`alerthooks.providers`: catch-up, reconcile, Chargebee's fetch
verification) and the manager (:mod:`alerthooks.manager`, whose provider APIs subclass these
clients) both import from here; this package imports neither of them.
"""
