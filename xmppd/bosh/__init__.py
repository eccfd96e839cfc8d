"""Browsers: one ASGI app (hypercorn, trio worker) for BOSH, WebSocket, the widget and history.

``app.py`` routes; ``websocket.py`` is RFC 7395 on the shared c2s driver; BOSH
(XEP-0124/0206) plugs in at ``app.HttpApp.http_bind``.
"""
