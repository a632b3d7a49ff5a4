<?php
/*
 * publish.php — publish one message to pushbrokerd from PHP (Debian: php-zmq).
 *
 * The core of an acknowledged publish is three lines:
 *
 *   $req = (new ZMQContext())->getSocket(ZMQ::SOCKET_REQ)->connect('tcp://127.0.0.1:7701');
 *   $req->sendmulti(['PUB', 'news', 'hello world']);   // optional 4th frame: event name
 *   [$status, $id, $subscribers] = $req->recvmulti();   // ['OK', id, n] or ['ERR', code, message]
 *
 * Below, the same with a receive timeout (a broker that is down must not hang
 * the page) and error handling.  Fire-and-forget: a ZMQ::SOCKET_PUSH socket
 * connected to the push endpoint (tcp://127.0.0.1:7702), same frames, no reply.
 *
 * Usage:  php publish.php <channel> <data> [event]
 * Env: PUSH_API (default tcp://127.0.0.1:7701), PUSH_TIMEOUT (ms, default 5000).
 * Prints "id=<id> subscribers=<n>"; exit 1 when the broker refuses the message
 * (ERR), 2 on usage errors, 3 on timeout.
 */

if ($argc < 3 || $argc > 4) {
    fwrite(STDERR, "usage: php publish.php <channel> <data> [event]\n");
    exit(2);
}
set_exception_handler(function ($e) {                // e.g. a malformed endpoint
    fwrite(STDERR, "error: zmq: {$e->getMessage()}\n");
    exit(3);
});
$endpoint  = getenv('PUSH_API') ?: 'tcp://127.0.0.1:7701';
$timeoutMs = (int)(getenv('PUSH_TIMEOUT') ?: 5000);  // ms

$req = (new ZMQContext())->getSocket(ZMQ::SOCKET_REQ);
$req->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);            // never wait for the broker at exit
$req->setSockOpt(ZMQ::SOCKOPT_SNDTIMEO, $timeoutMs);
$req->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, $timeoutMs);
$req->connect($endpoint);

$frames = ['PUB', $argv[1], $argv[2]];
if ($argc == 4 && $argv[3] !== '') {
    $frames[] = $argv[3];
}
$reply = $req->sendmulti($frames) ? $req->recvmulti() : false;

if ($reply === false) {                              // EAGAIN: the timeout expired
    fwrite(STDERR, "error: timeout: no reply from $endpoint within $timeoutMs ms\n");
    exit(3);
}
if ($reply[0] === 'OK' && count($reply) >= 3) {
    echo "id={$reply[1]} subscribers={$reply[2]}\n";
    exit(0);
}
if ($reply[0] === 'ERR') {
    fprintf(STDERR, "error: %s: %s\n", $reply[1] ?? '', $reply[2] ?? '');
    exit(1);
}
fwrite(STDERR, "error: protocol: unexpected reply '" . $reply[0] . "'\n");
exit(3);
