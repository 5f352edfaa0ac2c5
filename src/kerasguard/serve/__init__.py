"""kerasguard serve: an authenticated, rate-limited inference gateway in front of sandboxed models.

Modules, one job each: ``app`` (FastAPI factory and routes), ``guard`` (ASGI: body cap, access log,
the one error handler), ``auth`` (API keys -> tenant), ``registry`` (which store versions are served),
``workers`` (one sandboxed model per tenant and version, restarted with backoff), ``batching``
(dynamic batches), ``validation`` (request bodies -> checked arrays), ``ratelimit`` (``limits``),
``metrics`` (Prometheus), ``errors`` (reject reasons and bodies). See docs/serve.md.
"""
