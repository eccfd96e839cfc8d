<?php
// xmppd's admin socket from the forum's PHP: one JSON request, one JSON response (README,
// "Operating a running server"). The web server's user must be allowed on the socket:
// set admin.group (a group www-data is in) and admin.socket outside xmppd's private
// data_dir, e.g. /run/xmppd/admin.sock.

/**
 * Run one admin command on the running xmppd and return its answer as an array:
 * ['ok' => true, 'message' => ..., 'result' => [...]] or
 * ['ok' => false, 'error' => ..., 'message' => ...].
 *
 * Never raises a PHP warning: when xmppd cannot be reached the answer is
 * ['ok' => false, 'error' => 'unreachable', ...] within $timeout seconds, so a forum page
 * never breaks because the chat is down.
 *
 * @param string $command e.g. 'kick', 'say', 'sessions' (README lists them)
 * @param array  $args    the command's arguments, e.g. ['user' => $username]
 * @param string $socket  the admin socket's path (admin.socket)
 * @param float  $timeout seconds to connect and to wait for the answer
 */
function xmppd_admin(string $command, array $args = [],
                     string $socket = '/run/xmppd/admin.sock', float $timeout = 5.0): array
{
    $request = json_encode(['command' => $command, 'args' => (object) $args],
                           JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
    if ($request === false) {
        return ['ok' => false, 'error' => 'bad-request', 'message' => json_last_error_msg()];
    }
    // The forum's own error handler must not hear about a chat server that is down.
    set_error_handler(function () { return true; });
    try {
        $fp = stream_socket_client('unix://' . $socket, $errno, $errstr, $timeout);
        if ($fp === false) {
            return ['ok' => false, 'error' => 'unreachable',
                    'message' => "xmppd admin socket $socket: $errstr"];
        }
        stream_set_timeout($fp, (int) ceil($timeout));
        fwrite($fp, $request . "\n");
        $line = fgets($fp);
        fclose($fp);
    } finally {
        restore_error_handler();
    }
    $reply = is_string($line) ? json_decode($line, true) : null;
    if (!is_array($reply) || !isset($reply['ok'])) {
        return ['ok' => false, 'error' => 'unreachable',
                'message' => "no answer from xmppd on $socket"];
    }
    return $reply;
}
