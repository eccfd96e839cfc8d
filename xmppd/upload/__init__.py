"""XEP-0363 HTTP file upload: the pure parts (configuration, slot checks, file names and
the headers a stored file is served with). The service is :mod:`xmppd.services.upload`,
the bookkeeping :mod:`xmppd.storage.upload`, the HTTP side :mod:`xmppd.http.upload`."""
