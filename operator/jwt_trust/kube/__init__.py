"""The jwt-trust operator: Issuer and TrustPolicy reconciliation on top of the offline library.

Only this package imports kopf, kubernetes_asyncio, aiohttp and prometheus_client. Its layers, each
importing only the ones below it (an import-linter contract checks it):

* ``handlers``: the kopf entry point (``kopf run -m jwt_trust.kube.handlers``): read, decide, apply;
* ``writes``: applying an outcome idempotently (the Secret, the targets, the one status writer);
* ``operator``: what the daemons share (client, caches, pokes, Events, retries) and their loop;
* ``informers`` and ``external``: label-selected list+watch caches, and fetching an external JWKS;
* ``api``: the one Kubernetes API client (kubernetes_asyncio, server-side apply, list, watch);
* ``reconcile``, ``policies``, ``issuers``, ``errors``, ``events``, ``backoff``: the decisions, pure
  functions of what was observed and the time (no I/O, no clock, no kopf), unit-tested without a cluster.
"""
