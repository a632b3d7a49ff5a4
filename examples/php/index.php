<?php
/*
 * examples/php/index.php — a page that publishes to pushbrokerd with php-zmq
 * when its form is posted, and shows the channel live with EventSource.
 *
 * Served by php-cgi (Debian: php-cgi + php-zmq) through
 * examples/apache-examples.conf; the broker's api endpoint comes from the
 * environment variable PUSH_API (SetEnv PUSH_API ...), default
 * tcp://127.0.0.1:7701.  The publish itself is the three lines of the README:
 *
 *   $s = (new ZMQContext())->getSocket(ZMQ::SOCKET_REQ);
 *   $s->connect($endpoint);
 *   $s->sendmulti(['PUB', $channel, $message]); [$ok, $id, $subscribers] = $s->recvMulti();
 *
 * plus a timeout (a broker that is down must not hang the page) and errors.
 * Answers: 200 with the id and the subscriber count; 400 for a bad channel or
 * a missing field (nothing is published); 413 when the broker finds the
 * message too large; 502 when the broker refuses or does not answer; 405 for
 * other methods than GET and POST.
 */
declare(strict_types=1);

const CHANNEL_RE = '/^[A-Za-z0-9_.:@~-]{1,128}$/D';
const TIMEOUT_MS = 5000;

function h(string $s): string
{
    return htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
}

/** The broker endpoint: PUSH_API, also as REDIRECT_PUSH_API (php-cgi behind
 *  mod_actions runs in an internal redirect, which renames the variables). */
function push_endpoint(): string
{
    foreach (['PUSH_API', 'REDIRECT_PUSH_API'] as $name) {
        $v = getenv($name);
        if (is_string($v) && $v !== '') {
            return $v;
        }
    }
    return 'tcp://127.0.0.1:7701';
}

/**
 * Publish one message.  Returns ['id' => N, 'subscribers' => M] or throws
 * RuntimeException with the HTTP status to answer as its code.
 */
function push_publish(string $endpoint, string $channel, string $message): array
{
    if (!extension_loaded('zmq')) {
        throw new RuntimeException('the PHP extension zmq is not loaded for this SAPI '
            . '(Debian: apt-get install php-zmq; phpenmod -s cgi zmq)', 500);
    }
    try {
        $s = (new ZMQContext(1, false))->getSocket(ZMQ::SOCKET_REQ);
        $s->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);          // never wait for the broker at exit
        $s->setSockOpt(ZMQ::SOCKOPT_SNDTIMEO, TIMEOUT_MS);
        $s->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, TIMEOUT_MS);
        $s->connect($endpoint);
        $reply = $s->sendmulti(['PUB', $channel, $message]) ? $s->recvMulti() : false;
    } catch (ZMQException $e) {                           // e.g. a malformed endpoint
        throw new RuntimeException("zmq: {$e->getMessage()}", 502);
    }
    if ($reply === false) {                               // EAGAIN: the timeout expired
        throw new RuntimeException('timeout: no reply from the broker at ' . $endpoint
            . ' within ' . TIMEOUT_MS . ' ms', 502);
    }
    if (($reply[0] ?? '') === 'OK' && count($reply) >= 3
        && ctype_digit($reply[1]) && ctype_digit($reply[2])) {
        return ['id' => (int)$reply[1], 'subscribers' => (int)$reply[2]];
    }
    if (($reply[0] ?? '') === 'ERR') {
        $code = (string)($reply[1] ?? '');
        $status = $code === 'too_large' ? 413 : ($code === 'bad_channel' ? 400 : 502);
        throw new RuntimeException("the broker refused the message: $code: " . ($reply[2] ?? ''),
            $status);
    }
    throw new RuntimeException('protocol: unexpected reply from the broker', 502);
}

$method  = $_SERVER['REQUEST_METHOD'] ?? 'GET';
$channel = 'demo';
$message = '';
$result  = null;    // ['id' => .., 'subscribers' => ..]
$error   = null;
$status  = 200;

$length = getenv('CONTENT_LENGTH');
if ($method !== 'GET' && $method !== 'HEAD' && ($length === false || $length === '')) {
    // A body without Content-Length (chunked): Apache hands it to the CGI
    // program, but php-cgi reads (and discards at the end) only Content-Length
    // bytes.  Read it away, or the unread bytes reset mod_cgid's socket and
    // the client gets no answer.
    if (($in = fopen('php://stdin', 'rb')) !== false) {
        while (!feof($in) && fread($in, 65536) !== false) {
        }
        fclose($in);
    }
    $status = 411;
    $error  = 'send the form with a Content-Length (php-cgi cannot read a chunked body)';
} elseif ($method === 'POST') {
    $channel = $_POST['channel'] ?? null;
    $message = $_POST['message'] ?? null;
    if (!is_string($channel) || preg_match(CHANNEL_RE, $channel) !== 1) {
        $status = 400;
        $error  = 'invalid channel name: 1-128 characters of A-Z a-z 0-9 _ . : @ ~ -';
        $channel = is_string($channel) ? $channel : '';
    } elseif (!is_string($message)) {
        $status = 400;
        $error  = 'missing field: message';
        $message = '';
    } else {
        try {
            $result = push_publish(push_endpoint(), $channel, $message);
        } catch (RuntimeException $e) {
            $status = $e->getCode() ?: 502;
            $error  = $e->getMessage();
        }
    }
    $message = is_string($message) ? $message : '';
} elseif ($method !== 'GET' && $method !== 'HEAD') {
    $status = 405;
    $error  = 'use GET or POST';
    header('Allow: GET, HEAD, POST');
} elseif (isset($_GET['channel']) && is_string($_GET['channel'])
          && preg_match(CHANNEL_RE, $_GET['channel']) === 1) {
    $channel = $_GET['channel'];                          // only preselects the channel
}

http_response_code($status);
header('Content-Type: text/html; charset=utf-8');
header('Cache-Control: no-store');
header("Content-Security-Policy: default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'");
?>
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mod_push — publish from PHP</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 42em; margin: 2em auto; padding: 0 1em; }
  label { display: block; margin: .6em 0 .2em; }
  input[type=text], textarea { width: 100%; box-sizing: border-box; }
  .ok { color: #064; } .error { color: #a00; }
  #log { background: #f4f4f4; padding: .5em; min-height: 4em; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>Publish from PHP</h1>
<?php if ($result !== null): ?>
<p class="ok" id="result">Published on <code><?= h($channel) ?></code>: id
<strong id="pub-id"><?= (int)$result['id'] ?></strong>,
<strong id="pub-subscribers"><?= (int)$result['subscribers'] ?></strong> subscriber(s).</p>
<?php elseif ($error !== null): ?>
<p class="error" id="error">Not published: <?= h($error) ?></p>
<?php endif; ?>
<form id="publish" method="post" action="" accept-charset="UTF-8">
  <label for="channel">Channel</label>
  <input type="text" id="channel" name="channel" value="<?= h($channel) ?>" required
         maxlength="128" pattern="[A-Za-z0-9_.:@~\-]{1,128}">
  <label for="message">Message</label>
  <textarea id="message" name="message" rows="3"><?= h($message) ?></textarea>
  <p><button type="submit">Publish</button></p>
</form>
<h2>Live on <code id="live-channel"><?= h($channel) ?></code></h2>
<div id="log"></div>
<script>
  // The subscriber side: mod_push's Server-Sent Events on /sub/<channel>.
  const channel = document.getElementById('channel').value;
  const log = document.getElementById('log');
  if (/^[A-Za-z0-9_.:@~-]{1,128}$/.test(channel)) {
    const es = new EventSource('/sub/' + encodeURIComponent(channel));
    es.onmessage = (e) => { log.textContent += '#' + e.lastEventId + ' ' + e.data + '\n'; };
  }
</script>
</body>
</html>
