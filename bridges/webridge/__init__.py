"""webridge: forum events from a UNIX datagram socket into the chat room (issue 4).

``python -m bridges.webridge run --config FILE`` runs the service;
``python -m bridges.webridge say TEXT`` sends it a raw message; the forum calls
``saxSay()`` from ``php/saxsay.php``.
"""
