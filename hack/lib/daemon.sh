# Background daemons without an init system: each runs under a small supervisor loop
# in its own session (so one kill of the process group stops it and its children),
# logs to $NESTPLANE_STATE/logs/<name>.log, and is known by $NESTPLANE_STATE/run/<name>.pid.

daemon_pidfile() { echo "$NESTPLANE_STATE/run/$1.pid"; }

daemon_running() {
  local pidfile; pidfile="$(daemon_pidfile "$1")"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# daemon_start NAME COMMAND...: restarts COMMAND one second after it exits, until stopped.
daemon_start() {
  local name=$1; shift
  mkdir -p "$NESTPLANE_STATE/run" "$NESTPLANE_STATE/logs"
  if daemon_running "$name"; then
    log "$name already running (pid $(cat "$(daemon_pidfile "$name")"))"
    return 0
  fi
  local logfile="$NESTPLANE_STATE/logs/$name.log"
  # setsid makes the supervisor a process-group leader: its PID is the group to kill.
  setsid bash -c '
    trap "exit 0" TERM INT
    while true; do
      "$@" &
      wait $! || true
      echo "[supervisor] $(date +%T) exited; restarting in 1s"
      sleep 1
    done' "$name" "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$(daemon_pidfile "$name")"
  log "started $name (pid $!, log $logfile)"
}

# daemon_stop NAME: TERM the process group, then KILL what is left after 15 seconds.
daemon_stop() {
  local name=$1 pidfile; pidfile="$(daemon_pidfile "$name")"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every 2 seconds.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $what"
    sleep 2
  done
}
