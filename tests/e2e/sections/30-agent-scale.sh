# shellcheck shell=bash
# The node agent at node scale: 1,000 services beside the examples, within the system bus's
# limits (issue 17). Sourced by guest-tests (first boot only). Timings are printed, not checked.
[ "$PHASE" = first-boot ] || return 0

section "node agent at scale: 1,000 services on the system bus"
scale_count=1000
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# How many of them aictl status shows (checks run it in `sh -c`, where functions do not reach).
on_bus="aictl status 2>/dev/null | grep -c '^scale[0-9]'"

echo "    (the system bus's limits in this VM's /usr/share/dbus-1/system.conf:" \
    "$(grep -oE 'max_(match_rules|replies)_per_connection">[0-9]+' /usr/share/dbus-1/system.conf | tr -d '"' | tr '>' = | tr '\n' ' '))"
check "the system bus here has the limits the agent's tests copy (512 match rules, 128 pending replies)" \
    sh -c "grep -q 'max_match_rules_per_connection\">512<' /usr/share/dbus-1/system.conf \
        && grep -q 'max_replies_per_connection\">128<' /usr/share/dbus-1/system.conf"

before=$(aictl status --json | jq length)
for ((i = 0; i < scale_count; i++)); do
    printf '[service]\nimage = "localhost/busybox:latest"\nrun-as = "%s"\n' "$ACCOUNT" > "/etc/aicontainers/scale$(printf %04d "$i").toml"
done
t0=$(ms)
systemctl daemon-reload
t1=$(ms)
wait_for 300 sh -c "[ \"\$($on_bus)\" = $scale_count ]"
t2=$(ms)
echo "    (daemon-reload with $scale_count new services: systemctl daemon-reload returned after $((t1 - t0)) ms;" \
    "all $scale_count on the bus $((t2 - t0)) ms after it began; polled every 0.5 s)"
echo "    (the agent's own account of that rescan:)"
journalctl -u aicontainersd --no-pager -o short-precise --since "@$((t0 / 1000))" | grep -E 'service files in|services on the bus' | sed 's/^/    | /'

check "after daemon-reload all $scale_count services are in aictl status" sh -c "[ \"\$($on_bus)\" = $scale_count ]"
check "aictl status scale0999 shows the last one, inactive" \
    sh -c "[ \"\$(aictl status scale0999 | awk 'NR == 2 { print \$2 }')\" = inactive ]"
check "its STATUS line counts them all and has no problem to report ($(systemctl show -P StatusText aicontainersd))" \
    sh -c "[ \"\$(systemctl show -P StatusText aicontainersd)\" = 'Watching $((scale_count + before)) services' ]"
check "Manager1.Problems is empty" \
    sh -c "busctl get-property org.aicontainers.Agent1 /org/aicontainers/Agent1 org.aicontainers.Manager1 Problems | grep -qx 'as 0'"
check "no limit of the bus was hit (journal of aicontainersd)" \
    sh -c "! journalctl -u aicontainersd --no-pager | grep -E 'not allowed to add more match rules|LimitsExceeded|cannot show everything'"
owner=$(busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetNameOwner s org.aicontainers.Agent1 | awk '{ print $2 }' | tr -d '"')
if busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.Debug.Stats GetConnectionStats s "$owner" \
    --json=short > /tmp/agent-stats 2>/dev/null; then
    rules=$(jq '.data[0].MatchRules.data' /tmp/agent-stats)
    echo "    (the agent's match rules on the system bus: $rules, peak $(jq '.data[0].PeakMatchRules.data' /tmp/agent-stats))"
    check "the agent holds a handful of match rules, not one per service" test "$rules" -le 16
else
    echo "    (the system bus gives no statistics here: match rules not counted)"
fi
t=$(ms); aictl status >/dev/null; echo "    (aictl status with $((scale_count + before)) services: $(( $(ms) - t )) ms)"
t=$(ms); busctl call org.aicontainers.Agent1 /org/aicontainers/Agent1 org.freedesktop.DBus.ObjectManager GetManagedObjects >/dev/null
echo "    (GetManagedObjects by busctl: $(( $(ms) - t )) ms)"
echo "    (aicontainersd: $(grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$(systemctl show -P MainPID aicontainersd)/status" | tr -s '\t\n' '  '))"

# Leave the VM as it was, so later sections are not slowed.
rm -f /etc/aicontainers/scale[0-9][0-9][0-9][0-9].toml
systemctl daemon-reload
check "after removing them and a daemon-reload they are gone from the bus" wait_for 120 sh -c "[ \"\$($on_bus)\" = 0 ]"
