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
 * CURVE (a broker with curve_secret_key_file; tcp:// endpoints only): set
 * PUSH_CURVE_SERVER_KEY to the broker's public key and PUSH_CURVE_CLIENT_KEY to
 * this client's secret key (each 40 characters of Z85, or the name of a file
 * written by `pushctl keygen`); without a client key a throwaway key pair is
 * used, which a broker with curve_authorized_keys refuses.  The public key is
 * derived with PHP's sodium extension.  A refused client times out.
 *
 * Usage:  php publish.php <channel> <data> [event]
 * Env: PUSH_API (default tcp://127.0.0.1:7701), PUSH_TIMEOUT (ms, default 5000),
 * PUSH_CURVE_SERVER_KEY, PUSH_CURVE_CLIENT_KEY.
 * Prints "id=<id> subscribers=<n>"; exit 1 when the broker refuses the message
 * (ERR), 2 on usage errors (a bad key too), 3 on timeout.
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

// A CURVE key: its 40 Z85 characters, or a file with one key line ('#' comments).
function curve_key(string $value): string
{
    $isKey = fn($w) => strlen($w) === 40 && @ZMQ::z85decode($w) !== null
                       && strlen((string)@ZMQ::z85decode($w)) === 32;
    if ($isKey($value)) {
        return $value;
    }
    $text = @file_get_contents($value);
    if ($text === false) {
        fwrite(STDERR, "error: key: cannot read $value\n");
        exit(2);
    }
    $words = [];
    foreach (preg_split('/\r?\n/', $text) as $line) {
        $line = trim($line);
        if ($line !== '' && $line[0] !== '#') {
            $words[] = preg_split('/\s+/', $line)[0];
        }
    }
    if (count($words) !== 1 || !$isKey($words[0])) {
        fwrite(STDERR, "error: key: $value: expected exactly one CURVE key (40 characters of Z85)\n");
        exit(2);
    }
    return $words[0];
}

$req = (new ZMQContext())->getSocket(ZMQ::SOCKET_REQ);
$serverKey = getenv('PUSH_CURVE_SERVER_KEY');
if ($serverKey && str_starts_with($endpoint, 'tcp://')) {
    $clientKey = getenv('PUSH_CURVE_CLIENT_KEY');
    if ($clientKey) {
        $secret = curve_key($clientKey);
        $public = ZMQ::z85encode(sodium_crypto_scalarmult_base(ZMQ::z85decode($secret)));
    } else {
        ['public_key' => $public, 'secret_key' => $secret] = ZMQ::curvekeypair();
    }
    $req->setSockOpt(ZMQ::SOCKOPT_CURVE_SERVERKEY, curve_key($serverKey));
    $req->setSockOpt(ZMQ::SOCKOPT_CURVE_PUBLICKEY, $public);
    $req->setSockOpt(ZMQ::SOCKOPT_CURVE_SECRETKEY, $secret);
}
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
