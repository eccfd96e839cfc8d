"""The HTTP port: one ASGI app (hypercorn, trio worker) for the browser side.

``app.py`` routes (``/http-bind`` to :mod:`xmppd.bosh`, ``/ws`` to ``websocket.py``, the
widget, history, health and metrics); ``listen.py`` runs hypercorn behind the admitting
accept loop of ``serving.py``; ``proxy.py``, ``cors.py`` and ``h2c.py`` are the policies a
request passes; ``request.py`` the plain request/response values the routes exchange.
"""
