# shellcheck shell=bash
# Background daemons without an init system. Each runs in its own session (setsid), so one kill
# of the process group stops it and its children; it logs to $DAEMON_LOG_DIR/<name>.log and is
# known by $DAEMON_RUN_DIR/<name>.pid. By default a small supervisor loop restarts it when it
# exits; DAEMON_SUPERVISE=0 runs it once (the OpenStack cloud does, so a crash stays visible).
DAEMON_RUN_DIR="${DAEMON_RUN_DIR:-$NESTPLANE_STATE/run}"
DAEMON_LOG_DIR="${DAEMON_LOG_DIR:-$NESTPLANE_STATE/logs}"
DAEMON_SUPERVISE="${DAEMON_SUPERVISE:-1}"
DAEMON_STOP_TIMEOUT="${DAEMON_STOP_TIMEOUT:-15}"

daemon_pidfile() { echo "$DAEMON_RUN_DIR/$1.pid"; }

daemon_running() {
  local pidfile; pidfile="$(daemon_pidfile "$1")"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# daemon_start NAME COMMAND...: starts COMMAND unless NAME already runs.
daemon_start() {
  local name=$1; shift
  mkdir -p "$DAEMON_RUN_DIR" "$DAEMON_LOG_DIR"
  if daemon_running "$name"; then
    log "$name already running (pid $(cat "$(daemon_pidfile "$name")"))"
    return 0
  fi
  local logfile="$DAEMON_LOG_DIR/$name.log"
  if [ "$DAEMON_SUPERVISE" = 1 ]; then
    # The supervisor restarts COMMAND one second after it exits, until stopped. Single quotes:
    # the inner shell expands "$@" and $!, not this one.
    # shellcheck disable=SC2016
    setsid bash -c '
      trap "exit 0" TERM INT
      while true; do
        "$@" &
        wait $! || true
        echo "[supervisor] $(date +%T) exited; restarting in 1s"
        sleep 1
      done' "$name" "$@" >>"$logfile" 2>&1 </dev/null &
  else
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
  fi
  # setsid made it a process-group leader: its PID is the group to kill.
  echo $! >"$(daemon_pidfile "$name")"
  log "started $name (pid $!, log $logfile)"
}

# daemon_stop NAME...: TERM each process group at once, KILL what is left after
# $DAEMON_STOP_TIMEOUT seconds, and remove the PID files.
daemon_stop() {
  local name pidfile pid pids=() names=()
  for name in "$@"; do
    pidfile="$(daemon_pidfile "$name")"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -TERM -- "-$pid" 2>/dev/null; then
      pids+=("$pid")
      names+=("$name")
    fi
    rm -f "$pidfile"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local deadline=$((SECONDS + DAEMON_STOP_TIMEOUT)) alive
  while :; do
    alive=0
    for pid in "${pids[@]}"; do
      kill -0 -- "-$pid" 2>/dev/null && alive=1
    done
    if [ $alive -eq 0 ] || [ $SECONDS -ge $deadline ]; then break; fi
    sleep 0.5
  done
  for pid in "${pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  log "stopped ${names[*]}"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every $WAIT_INTERVAL seconds (2).
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $what${WAIT_HINT:+ ($WAIT_HINT)}"
    sleep "${WAIT_INTERVAL:-2}"
  done
}
