#!/bin/sh
# Start or stop the live demo: pushbrokerd + a private Apache on 127.0.0.1.
#   tools/demo.sh start DIR     (PORT=8080 by default; HTTPD=path of apache2;
#                                EXTRA_CONF=file: one more httpd include, e.g. examples/apache-examples.conf)
#   tools/demo.sh stop DIR
# Everything the demo writes (pid files, logs, the broker's state) is under DIR.
set -eu
cmd=${1:?usage: demo.sh start|stop DIR}
dir=${2:?usage: demo.sh start|stop DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
httpd=${HTTPD:-/usr/sbin/apache2}
port=${PORT:-8080}

alive() { pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

wait_gone() {   # pid file, seconds
    i=0
    while alive "$1" && [ $i -lt $(( $2 * 10 )) ]; do sleep 0.1; i=$((i + 1)); done
    ! alive "$1"
}

start() {
    mkdir -p "$dir"
    if alive "$dir/httpd.pid" || alive "$dir/broker.pid"; then
        echo "The demo is already running (make demo-stop first)." >&2
        exit 1
    fi
    mkdir -p "$dir/data"
    "$src/pushbrokerd/pushbrokerd" -c "$src/conf/pushbrokerd.conf" -d --data-dir "$dir/data" \
        -p "$dir/broker.pid" --log "$dir/broker.log"
    cat > "$dir/httpd.args" <<ARGS
-d $dir -f $src/conf/httpd.conf -C "Define PUSH_RUNDIR $dir" -C "Define PUSH_SRC $src" -C "Define PUSH_PORT $port" -C "Define PUSH_MODULE $src/mod_push/.libs/mod_push.so" -C "Define PUSH_BROKER tcp://127.0.0.1:7703" -C "Define PUSH_DEMO 1" ${EXTRA_CONF:+-C "Define PUSH_EXTRA_CONF $EXTRA_CONF"}
ARGS
    eval "\"$httpd\" $(cat "$dir/httpd.args") -k start"
    i=0
    until curl -fs -o /dev/null "http://127.0.0.1:$port/sub/demo?poll=1"; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "The demo did not come up; see $dir/error.log and $dir/broker.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    cat <<MSG

mod_push demo running.
  Open:     http://127.0.0.1:$port/            (live chat; rooms are channels: /#lobby, /#demo)
  Publish:  clients/c/pushctl publish lobby '{"from":"pushctl","text":"hello"}'
            curl --data 'hello from curl' http://127.0.0.1:$port/pub/lobby
            php clients/php/publish.php lobby "hello from PHP"
  Watch:    curl -N -H 'Accept: text/event-stream' http://127.0.0.1:$port/sub/lobby
  Who:      curl http://127.0.0.1:$port/presence/lobby
  Logs:     $dir/error.log  $dir/broker.log
  Stop:     make demo-stop
MSG
}

stop() {
    if alive "$dir/httpd.pid"; then
        eval "\"$httpd\" $(cat "$dir/httpd.args") -k stop" || true
        wait_gone "$dir/httpd.pid" 15 || echo "Apache did not stop; pid $(cat "$dir/httpd.pid")" >&2
    fi
    if alive "$dir/broker.pid"; then
        kill -TERM "$(cat "$dir/broker.pid" 2>/dev/null)" 2>/dev/null || true
        wait_gone "$dir/broker.pid" 10 || echo "pushbrokerd did not stop" >&2
    fi
    echo "mod_push demo stopped."
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: demo.sh start|stop DIR" >&2; exit 2 ;;
esac
