#!/usr/bin/env bash
# Lists the test cloud's processes (from their PID files) with the RSS of each process group.
. "$(dirname "$0")/lib.sh"

total=0
pss=0
printf '%-34s %8s %10s\n' PROCESS PID RSS_MiB
for pidfile in "$OS_RUN"/*.pid; do
  [ -e "$pidfile" ] || continue
  name="$(basename "$pidfile" .pid)"
  pid="$(cat "$pidfile")"
  if ! kill -0 "$pid" 2>/dev/null; then
    printf '%-34s %8s %10s\n' "$name" "$pid" down
    continue
  fi
  # Every process in the group: gunicorn workers, privsep daemons, beam, ...
  kb="$(ps -o rss= -g "$pid" | awk '{s += $1} END {print s + 0}')"
  total=$((total + kb))
  for p in $(ps -o pid= -g "$pid"); do
    v="$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)"
    pss=$((pss + ${v:-0}))
  done
  printf '%-34s %8s %10d\n' "$name" "$pid" $((kb / 1024))
done
# QEMU belongs to libvirtd's group only while libvirtd runs it; count guests apart.
qemu_kb="$( (ps -C qemu-system-x86_64 -o rss= || true) | awk '{s += $1} END {print s + 0}')"
printf '%-34s %8s %10d\n' "qemu guests" "-" $((qemu_kb / 1024))
printf '%-34s %8s %10d\n' "total" "-" $(((total + qemu_kb) / 1024))
# RSS counts pages that forked workers share with their parents once per process; PSS splits them.
printf '%-34s %8s %10d\n' "total PSS (without guests)" "-" $((pss / 1024))
