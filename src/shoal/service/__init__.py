"""``shoal serve``: coding-agent jobs, each in its own git checkout, behind a FIFO queue.

FastAPI and uvicorn are imported by :mod:`shoal.service.app` only, so ``import shoal``
and the pytest plugin never need them (``pip install shoal[serve]``).
"""
