"""BOSH (XEP-0124/0206): the connection manager behind ``/http-bind`` of :mod:`xmppd.http`.

``body.py`` parses and renders ``<body/>``, ``session.py`` is one session's pure rules
(rid window, holds, keys), ``manager.py`` runs sessions on the shared c2s driver.
"""
