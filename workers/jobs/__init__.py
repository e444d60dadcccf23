"""Job handlers, one module per worker kind: ``warm_up()`` (optional) and ``run(ctx, request)``."""
