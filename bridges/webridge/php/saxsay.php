<?php
/**
 * saxSay() for the forum: announce an event in the chat room through webridge.
 *
 * Drop-in replacement for the old saxSay($type, $who, $what, $where): the old numeric
 * types still work (see saxsay_types()), symbolic ones ('reply', 'new_topic', ...) too.
 * It sends ONE JSON datagram to webridge's UNIX datagram socket and returns at once:
 * the socket is non-blocking, and when the bridge is down (no socket, nobody reading,
 * queue full) the call returns false silently - no warning, no exception, no delay for
 * the page. The bridge renders the text (one template table, bridges/webridge/events.py).
 *
 *   require_once 'saxsay.php';
 *   saxSay(2, $username, $topic_title, ['forum' => $forum_name, 'url' => $post_url]);
 *   saxSay('announcement', '', 'Board maintenance at 20:00 UTC', '');
 *
 * The socket path: the 5th argument, else the constant SAXSAY_SOCKET (define it before
 * including this file), else /run/xmppd-webridge/webridge.sock.
 */

if (!defined('SAXSAY_SOCKET')) {
    define('SAXSAY_SOCKET', '/run/xmppd-webridge/webridge.sock');
}

/**
 * The old magic numbers -> symbolic types. Define SAXSAY_TYPES (an array constant)
 * before including this file if the forum's numbers differ.
 */
function saxsay_types(): array
{
    if (defined('SAXSAY_TYPES')) {
        return SAXSAY_TYPES;
    }
    return [
        1 => 'new_topic',     // a new thread was created
        2 => 'reply',         // a post in a thread
        3 => 'edit',          // a post was edited
        4 => 'new_member',    // a member registered
        5 => 'announcement',  // a site announcement
        6 => 'say',           // a message from a user ($who says $what)
        7 => 'raw',           // text posted as is
    ];
}

/**
 * The event for webridge, or null for an unknown type. $where is the link (a string) or
 * an array with 'forum' and 'url'.
 */
function saxsay_event($type, $who, $what, $where): ?array
{
    if (is_int($type) || (is_string($type) && preg_match('/^[0-9]+$/', $type) === 1)) {
        $types = saxsay_types();
        $type = $types[(int) $type] ?? null;
    }
    if (!is_string($type) || $type === '') {
        return null;
    }
    $forum = '';
    $url = '';
    if (is_array($where)) {
        $forum = (string) ($where['forum'] ?? '');
        $url = (string) ($where['url'] ?? '');
    } else {
        $url = (string) $where;
    }
    $event = ['type' => $type];
    switch ($type) {
        case 'new_topic':
        case 'reply':
        case 'edit':
            $event += ['who' => (string) $who, 'forum' => $forum, 'title' => (string) $what, 'url' => $url];
            break;
        case 'new_member':
            $event += ['who' => (string) $who, 'url' => $url];
            break;
        case 'announcement':
            $event += ['title' => (string) $what, 'url' => $url];
            break;
        case 'say':
            $event += ['who' => (string) $who, 'text' => (string) $what];
            break;
        case 'raw':
            $event += ['text' => (string) ($what !== '' ? $what : $who)];
            break;
        default:  // a type this file does not know: let the bridge judge (and log) it
            $event += ['who' => (string) $who, 'title' => (string) $what, 'url' => $url];
    }
    return array_filter($event, function ($v) { return $v !== ''; });
}

/**
 * Announce an event; true when the datagram was handed to the bridge.
 */
function saxSay($type, $who, $what = '', $where = '', ?string $socket = null): bool
{
    $event = saxsay_event($type, $who, $what, $where);
    if ($event === null || !function_exists('socket_create')) {
        return false;
    }
    $data = json_encode($event, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
    if ($data === false || strlen($data) >= 65536) {
        return false;
    }
    $path = $socket ?? SAXSAY_SOCKET;
    // The forum's own error handler must not hear about a bridge that is down.
    set_error_handler(function () { return true; });
    try {
        $sock = socket_create(AF_UNIX, SOCK_DGRAM, 0);
        if ($sock === false) {
            return false;
        }
        socket_set_nonblock($sock);
        $sent = socket_sendto($sock, $data, strlen($data), 0, $path);
        socket_close($sock);
        return $sent === strlen($data);
    } catch (\Throwable $e) {
        return false;
    } finally {
        restore_error_handler();
    }
}
