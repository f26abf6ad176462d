# shellcheck shell=bash
# Live usage from each service's cgroup (aicontainersd's Service1.Usage): aictl status shows
# MEM, CPU and OOM for a running service; the cpuset it reads is what placement gave, and a
# change behind placement's back is reported as drift; a process that grows past the service's
# memory limit is OOM-killed and the OOM column counts it, both while the unit runs on (Quadlet
# units have OOMPolicy=continue: systemd's default with Delegate=yes) and when a drop-in's
# OOMPolicy=stop makes systemd stop the unit (Result=oom-kill); aictl top prints its table when
# not on a terminal.
[ "$PHASE" = first-boot ] || return 0

section "live usage: aictl status MEM/CPU/OOM from the cgroup, drift, an OOM kill counted, aictl top"
cat > /etc/aicontainers/usage-idle.toml <<'TOML'
[service]
image = "localhost/busybox:latest"
command = ["sh", "-c", "exec sleep 100000"]
run-as = "aimodels"
restart = "no"
TOML
# A child shell doubles a string until the kernel's OOM killer stops it at the unit's
# MemoryMax=; the container's main process lives on.
cat > /etc/aicontainers/oom-hog.toml <<'TOML'
[service]
image = "localhost/busybox:latest"
command = ["sh", "-c", "(x=0123456789abcdef; while :; do x=$x$x; done); exec sleep 100000"]
run-as = "aimodels"
restart = "no"
[resources]
memory = "192M"
TOML
check "daemon-reload with usage-idle and oom-hog" systemctl daemon-reload
check "oom-hog's unit has MemoryMax=192M" sh -c "[ \"\$(systemctl show -P MemoryMax oom-hog)\" = $((192 * 1024 * 1024)) ]"
check "systemctl start usage-idle" systemctl start usage-idle
check "aictl status has the columns NAME STATE MEM CPU OOM ACCOUNT GPUS NUMA SANDBOX IMAGE" \
    sh -c "[ \"\$(aictl status usage-idle | head -1 | tr -s ' ')\" = 'NAME STATE MEM CPU OOM ACCOUNT GPUS NUMA SANDBOX IMAGE' ]"
check "aictl status shows usage-idle's live memory, CPU time and no OOM kill" \
    wait_for 30 sh -c "aictl status usage-idle | awk 'NR == 2 && \$2 == \"active\" && \$3 ~ /^[0-9.]+[BKMG]\$/ && \$4 ~ /s\$/ && \$5 == 0 { ok = 1 } END { exit !ok }'"
check "aictl status --json: usage read from systemd's cgroup of the unit, tasks and the cpuset" \
    sh -c "aictl status --json usage-idle | jq -e --arg cg \"\$(systemctl show -P ControlGroup usage-idle)\" \
        '.[0].usage | .state == \"running\" and .cgroup == \$cg and .memory_current > 0 and .memory_peak >= .memory_current and .tasks >= 1 and .cpu_usec > 0 and .oom_kills == 0 and .problems == []'"
aictl status usage-idle | sed 's/^/    | /'
echo "    (systemd's view of the same cgroup: MemoryCurrent=$(systemctl show -P MemoryCurrent usage-idle) TasksCurrent=$(systemctl show -P TasksCurrent usage-idle))"

# gpu-chat is placed on node 0 (AllowedCPUs=0-1, AllowedMemoryNodes=0, see guest-tests).
check "systemctl start gpu-chat" systemctl start gpu-chat
check "gpu-chat's cgroup runs on what placement gave (CPUs 0-1, node 0): no drift" \
    sh -c "aictl status --json gpu-chat | jq -e '.[0].usage | .cpus == [0, 1] and .memory_nodes == [0] and .problems == []'"
lu_cg=/sys/fs/cgroup$(systemctl show -P ControlGroup gpu-chat)
echo 0-3 > "$lu_cg/cpuset.cpus"
check "a cpuset changed behind placement's back is reported as drift" \
    sh -c "aictl status gpu-chat | grep -qxF 'gpu-chat: drift: placement gave CPUs 0-1, the cgroup has 0-3 (cpuset.cpus.effective)'"
echo 0-1 > "$lu_cg/cpuset.cpus"
check "put back, the drift is gone" sh -c "! aictl status gpu-chat | grep -q drift"

check "systemctl start oom-hog" systemctl start oom-hog
check "oom-hog's child exceeds the memory limit and is OOM-killed; the OOM column counts it, the unit runs on" \
    wait_for 120 sh -c "aictl status oom-hog | awk 'NR == 2 && \$2 == \"active\" && \$5 >= 1 { ok = 1 } END { exit !ok }'"
check "aictl status --json: the kill is this run's, from memory.events" \
    sh -c "aictl status --json oom-hog | jq -e '.[0].usage | .state == \"running\" and .oom_kills_this_run >= 1 and .oom_kills == .oom_kills_this_run and .oom_stopped_runs == 0'"
aictl status oom-hog | sed 's/^/    | /'
journalctl -k --no-pager -o cat | grep -E 'Memory cgroup out of memory' | tail -1 | sed 's/^/    | /'

# With OOMPolicy=stop systemd stops the unit at the kill and its cgroup goes: the agent counts
# the run from systemd's Result.
systemctl stop oom-hog
mkdir -p /run/systemd/system/oom-hog.service.d
printf '[Service]\nOOMPolicy=stop\n' > /run/systemd/system/oom-hog.service.d/50-oom-stop.conf
systemctl daemon-reload
systemctl start oom-hog 2>/dev/null
check "with OOMPolicy=stop, systemd stops oom-hog at the kill (Result=oom-kill)" \
    wait_for 120 sh -c "[ \"\$(systemctl show -P Result oom-hog)\" = oom-kill ]"
check "the OOM column counts the run systemd stopped" \
    wait_for 30 sh -c "aictl status --json oom-hog | jq -e '.[0].usage | .state == \"stopped\" and .oom_stopped_runs == 1 and .oom_kills >= 1'"
aictl status oom-hog usage-idle | sed 's/^/    | /'
journalctl -u oom-hog --no-pager -o cat | grep -iE 'oom' | tail -2 | sed 's/^/    | /'
rm -rf /run/systemd/system/oom-hog.service.d

check "aictl top, not on a terminal, prints one table and exits" \
    sh -c "[ \"\$(aictl top | grep -c '^NAME ')\" = 1 ] && aictl top | grep -q '^usage-idle '"
check "aictl top -n 2 -d 0.5 prints two tables, the second with %CPU" \
    sh -c "aictl top -n 2 -d 0.5 > /tmp/top.out && [ \"\$(grep -c '^NAME ' /tmp/top.out)\" = 2 ] && awk '/^NAME /{n++} n == 2 && /^usage-idle / && \$4 ~ /^[0-9]+[.][0-9]\$/ { ok = 1 } END { exit !ok }' /tmp/top.out"
sed 's/^/    | /' /tmp/top.out

systemctl stop usage-idle oom-hog >/dev/null 2>&1
systemctl reset-failed oom-hog >/dev/null 2>&1
rm -f /etc/aicontainers/usage-idle.toml /etc/aicontainers/oom-hog.toml
systemctl daemon-reload
