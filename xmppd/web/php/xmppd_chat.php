<?php
// xmppd chat widget for a forum page: the recent history goes into the page itself, so
// it shows before the widget has connected (the old SAX did this; the ejabberd set-up
// could not). Include this file from the forum and echo xmppd_chat_history() inside the
// widget's container element (see README, "Embedding the chat widget").

/**
 * The room's recent messages as a <script type="application/json"> element for the widget,
 * or '' when xmppd cannot be reached quickly (the widget then fetches /chat/history itself).
 *
 * @param string $history_url xmppd's /chat/history as PHP reaches it (usually loopback)
 * @param string $room        the room's localpart
 * @param int    $limit       newest N messages
 */
function xmppd_chat_history(string $history_url = 'http://127.0.0.1:5280/chat/history',
                            string $room = 'sax', int $limit = 30): string
{
    $url = $history_url . '?' . http_build_query(['room' => $room, 'limit' => $limit]);
    $ctx = stream_context_create(['http' => ['timeout' => 1.5, 'ignore_errors' => false]]);
    $json = @file_get_contents($url, false, $ctx);
    if ($json === false) {
        return '';
    }
    $doc = json_decode($json, true);
    if (!is_array($doc) || !isset($doc['messages'])) {
        return '';
    }
    // JSON_HEX_TAG/AMP: no "</script>" or "<!--" can appear in the element; the text stays
    // plain text (the widget never renders it as HTML).
    return '<script type="application/json" class="xmppd-chat-history">'
        . json_encode($doc, JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT
            | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)
        . '</script>';
}
