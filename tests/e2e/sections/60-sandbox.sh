# shellcheck shell=bash
# Sandboxed services ([sandbox], docs/sandbox.md): targets in a network namespace this section
# creates (veth, IPv4 and IPv6, TCP and UDP); from inside the sandboxed rootless container the
# listed destinations answer and everything else is refused and logged; it holds after a
# restart of the service and of the agent, fails closed when the table is flushed or deleted,
# and a process with every capability of the container's user namespace cannot lift it. The
# keeper (aicontainers-sandbox.service) follows a name whose DNS answer changes, and puts
# deleted tables back.
# The probes run inside the container with nsenter into all its namespaces (as the container's
# root: more than the service itself holds, since its capabilities are dropped).

SB=sbx
SB_TGT=aic-sbx-tgt

# The target namespace: 10.9.0.2 / fd09::2 with web servers on 80 and 81; the host side is
# 10.9.0.1 / fd09::1 (networkd leaves the link alone). pasta gives the container the addresses
# and routes of the host's interface with the default route, and the VM has none for IPv4 (its
# IPv6 one goes nowhere): default routes through the target, for this section only.
sb_targets() {
    sb_untargets
    grep -q ' target.sbx.test$' /etc/hosts || echo "10.9.0.2 target.sbx.test" >> /etc/hosts
    mkdir -p /run/systemd/network /tmp/sbx-www
    printf '[Match]\nName=sbx0\n[Link]\nUnmanaged=yes\n' > /run/systemd/network/10-sbx0.network
    networkctl reload
    echo "sandbox target" > /tmp/sbx-www/index.html
    ip netns add "$SB_TGT" &&
        ip link add sbx0 type veth peer name sbx1 &&
        ip link set sbx1 netns "$SB_TGT" &&
        ip addr add 10.9.0.1/24 dev sbx0 &&
        ip -6 addr add fd09::1/64 dev sbx0 nodad &&
        ip link set sbx0 up &&
        ip -n "$SB_TGT" addr add 10.9.0.2/24 dev sbx1 &&
        ip -n "$SB_TGT" -6 addr add fd09::2/64 dev sbx1 nodad &&
        ip -n "$SB_TGT" link set sbx1 up &&
        ip -n "$SB_TGT" link set lo up &&
        ip -n "$SB_TGT" addr add 10.9.0.3/24 dev sbx1 &&
        ip -n "$SB_TGT" addr add 10.9.0.4/24 dev sbx1 &&
        sb_dns &&
        ip netns exec "$SB_TGT" busybox httpd -p 80 -h /tmp/sbx-www &&
        ip netns exec "$SB_TGT" busybox httpd -p 81 -h /tmp/sbx-www &&
        ip route add default via 10.9.0.2 dev sbx0 metric 100 &&
        ip -6 route add default via fd09::2 dev sbx0 metric 100
}
# A DNS server in the target namespace (10.9.0.2:53) for the host's resolver: moving.sbx.test
# has one A record, the address in /tmp/sbx-dns.addr, with a TTL of 2 s; no AAAA; every other
# name is NXDOMAIN. The host's resolv.conf points at it while the section runs.
sb_dns() {
    echo 10.9.0.3 > /tmp/sbx-dns.addr
    cat > /tmp/sbx-dns.py <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.9.0.2", 53))
while True:
    q, peer = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    name = ".".join(labels).lower()
    addr = open("/tmp/sbx-dns.addr").read().split()[0]
    ans, count, rcode = b"", 0, 0 if name == "moving.sbx.test" else 3
    if name == "moving.sbx.test" and qtype == 1:
        ans, count = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 2, 4) + socket.inet_aton(addr), 1
    s.sendto(q[:2] + struct.pack(">HHHHH", 0x8180 | rcode, 1, count, 0, 0) + q[12:i + 5] + ans, peer)
PY
    [ -e /tmp/sbx-resolv.conf.orig ] || cat /etc/resolv.conf > /tmp/sbx-resolv.conf.orig
    echo "nameserver 10.9.0.2" > /etc/resolv.conf
    ip netns exec "$SB_TGT" python3 /tmp/sbx-dns.py &
    wait_for 30 getent hosts moving.sbx.test
}
# A UDP listener in the target namespace that writes the first datagram it gets to
# /tmp/sbx-udp.PORT (busybox nc has no UDP mode).
sb_udp_listen() {
    rm -f "/tmp/sbx-udp.$1"
    ip netns exec "$SB_TGT" timeout 60 python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.9.0.2", int(sys.argv[1])))
sys.stdout.write(s.recv(512).decode("ascii", "replace")); sys.stdout.flush()' "$1" > "/tmp/sbx-udp.$1" &
}
sb_untargets() {
    pkill -f /tmp/sbx-dns.py
    [ -e /tmp/sbx-resolv.conf.orig ] && cat /tmp/sbx-resolv.conf.orig > /etc/resolv.conf && rm -f /tmp/sbx-resolv.conf.orig
    ip route del default via 10.9.0.2 dev sbx0 metric 100 2>/dev/null
    ip -6 route del default via fd09::2 dev sbx0 metric 100 2>/dev/null
    ip netns del "$SB_TGT" 2>/dev/null
    ip link del sbx0 2>/dev/null
    rm -f /run/systemd/network/10-sbx0.network
}
sb_pid() { as_account podman inspect -f '{{.State.Pid}}' "$SB"; }
# sb_in CMD...: runs CMD inside the container (all its namespaces, as its root).
sb_in() { nsenter -t "$(sb_pid)" -a "$@"; }
sb_get() { sb_in /bin/busybox wget -q -T 5 -O - "$1" | grep -q 'sandbox target'; }
sb_refused() { ! sb_in /bin/busybox wget -q -T 5 -O - "$1"; }
sb_nc_refused() { ! sb_in /bin/busybox nc -w 5 "$1" "$2" </dev/null; }
# sb_udp ADDR PORT MARKER: one UDP datagram holding MARKER from inside (a TFTP read request).
sb_udp() { sb_in /bin/busybox timeout 3 /bin/busybox tftp -g -r "$3" -l /tmp/sbx-tftp "$1" "$2"; }
sb_logged() { aictl sandbox log "$SB" | grep -E "$1"; }
# MESSAGE_ID= of the agent's verdict entries (core/src/sandbox/audit.rs, docs/sandbox.md).
SB_MSGID=c825ed94daed4d9297e6d519e3fd6f72
# sb_fields FILTER...: the agent's verdict entries of the service that match journalctl FILTER...,
# one line each: VERDICT PROTO DEST PORT UNIT.
sb_fields() {
    journalctl -b --no-pager -o json "$@" | jq -r '[.SANDBOX_VERDICT, .PROTO, .DEST, (.PORT // "-"), .OBJECT_SYSTEMD_UNIT] | join(" ")'
}
# Every kernel line of the service's verdicts was forwarded once: as many entries as lines.
sb_forwarded_once() {
    local lines entries
    lines=$(journalctl -b -k SYSLOG_FACILITY=0 --no-pager -o cat --grep "^aicontainers (allow|deny) $SB " | grep -c "^aicontainers")
    entries=$(journalctl -b --no-pager -o cat MESSAGE_ID="$SB_MSGID" SERVICE="$SB" _UID=0 | grep -c .)
    echo "kernel lines: $lines, forwarded entries: $entries"
    [ "$lines" -gt 0 ] && [ "$lines" = "$entries" ]
}
sb_verdicts() { busctl get-property org.aicontainers.Agent1 "/org/aicontainers/Agent1/service/$SB" org.aicontainers.Service1 SandboxVerdicts; }
# sb_counted ALLOWED_MIN DENIED_MIN: the counters are at least these.
sb_counted() { sb_verdicts | tee /dev/stderr | awk -v a="$1" -v d="$2" '$1 == "(tt)" && $2 >= a && $3 >= d { ok = 1 } END { exit !ok }'; }
sb_denied_entry() { sb_fields -u "$SB" SANDBOX_VERDICT=denied MESSAGE_ID="$SB_MSGID" | grep -x "denied tcp 10.9.0.2 81 $SB.service"; }
sb_allowed_entries() {
    local out; out=$(sb_fields -u "$SB" SANDBOX_VERDICT=allowed)
    echo "$out" | grep -qx "allowed tcp 10.9.0.2 80 $SB.service" && ! echo "$out" | grep -q denied
}
sb_icmp_entry() { sb_fields MESSAGE_ID="$SB_MSGID" SERVICE="$SB" PROTO=icmp | grep -x "denied icmp 10.9.0.2 - $SB.service"; }
sb_guarded() { nft -j list set inet aicontainers_guard sandboxed | grep -q "/$SB.service"; }
sb_zero() { [ "$(sb_verdicts)" = "(tt) 0 0" ]; }
sb_forged_not_forwarded() {
    journalctl -b -k --no-pager -o cat | grep -q 10.66.6.6 &&
        ! journalctl -b --no-pager MESSAGE_ID="$SB_MSGID" DEST=10.66.6.6 | grep -q 10.66.6.6
}
sb_allowed_set() {
    busctl get-property org.aicontainers.Agent1 "/org/aicontainers/Agent1/service/$SB" org.aicontainers.Service1 SandboxAllowed |
        tee /dev/stderr | grep -F '"10.9.0.2" "tcp" 80' | grep -F '"fd09::2" "tcp" 80' | grep -qF '"10.9.0.2" "udp" 5353'
}

sb_service() {
    cat > /etc/aicontainers/$SB.toml <<'TOML'
[service]
image = "localhost/busybox:latest"
command = ["sleep", "100000"]
run-as = "aimodels"

[sandbox]
egress = ["target.sbx.test:80", "[fd09::2]:80", "10.9.0.2:5353/udp", "moving.sbx.test:80"]
pids = 64
memory = "256M"
TOML
}

sb_core_checks() {  # $1: when (a word for the check names)
    check "sandbox ($1): an allowed name (target.sbx.test:80, pinned in /etc/hosts) answers from inside" \
        wait_for 30 sb_get http://target.sbx.test/
    check "sandbox ($1): the allowed IPv6 address ([fd09::2]:80) answers" sb_get "http://[fd09::2]/"
    check "sandbox ($1): another port of the same address (10.9.0.2:81) is refused" sb_refused http://10.9.0.2:81/
    check "sandbox ($1): IPv6 on another port ([fd09::2]:81) is refused" sb_refused "http://[fd09::2]:81/"
    # pasta maps 169.254.1.2 in the container to the host (podman's --map-guest-addr).
    check "sandbox ($1): the host itself (169.254.1.2:22, pasta's address for it) is refused" sb_nc_refused 169.254.1.2 22
    check "sandbox ($1): the host's other address (10.0.2.15:22) is refused" sb_nc_refused 10.0.2.15 22
}

if [ "$PHASE" = first-boot ]; then
    section "sandbox: targets, the service, hardening"
    check "target namespace with IPv4/IPv6 web servers on 80 and 81" sb_targets
    sb_service
    check "daemon-reload with $SB.toml" systemctl daemon-reload
    check "aictl validate $SB.toml" aictl validate /etc/aicontainers/$SB.toml
    check "systemctl start $SB" systemctl start "$SB"
    check "$SB runs in aicontainers-agents.slice" sh -c "[ \$(systemctl show -P Slice $SB) = aicontainers-agents.slice ]"
    check "$SB: the unit's pids and memory limits (TasksMax=64, MemoryMax=256M) are on its cgroup" \
        sh -c "cg=/sys/fs/cgroup\$(systemctl show -P ControlGroup $SB); [ \$(cat \$cg/pids.max) = 64 ] && [ \$(cat \$cg/memory.max) = 268435456 ]"
    check "aicontainers-agents.slice carries its aggregate limit (TasksMax=8192)" \
        sh -c "[ \$(cat /sys/fs/cgroup/aicontainers.slice/aicontainers-agents.slice/pids.max) = 8192 ]"
    check "$SB: no capabilities in the container (CapEff 0) and no new privileges" \
        sh -c "grep -q '^CapEff:.*0000000000000000' /proc/$(sb_pid)/status && grep -q '^NoNewPrivs:.*1' /proc/$(sb_pid)/status"
    check "$SB: the root file system is read-only, /tmp is writable scratch" \
        sh -c "! nsenter -t $(sb_pid) -a /bin/busybox touch /sbx-probe && nsenter -t $(sb_pid) -a /bin/busybox touch /tmp/sbx-probe"
    check "$SB: its /etc/hosts holds the pinned name" sb_in /bin/busybox grep -q '^10.9.0.2.target.sbx.test$' /etc/hosts

    section "sandbox: egress from inside the rootless container"
    sb_core_checks "first start"
    sb_udp_listen 5353
    sleep 1
    sb_udp 10.9.0.2 5353 sbx-udp-allowed
    check "sandbox: the allowed UDP destination (10.9.0.2:5353/udp) receives" \
        wait_for 10 grep -q sbx-udp-allowed /tmp/sbx-udp.5353
    sb_udp_listen 5354
    sb_udp 10.9.0.2 5354 sbx-udp-denied
    sb_udp 10.9.0.2 80 sbx-udp-tcp-only
    check "sandbox: another UDP port (10.9.0.2:5354/udp) receives nothing" \
        sh -c "sleep 2; ! grep -q sbx-udp-denied /tmp/sbx-udp.5354"
    # pasta sends ICMP through ping sockets, which the account may open only if its group is in
    # ping_group_range (Debian's default lets no one): allowed here, so that nftables decides.
    sb_ping_range=$(sysctl -n net.ipv4.ping_group_range)
    sysctl -qw net.ipv4.ping_group_range="0 2147483647"
    check "sandbox: ping (ICMP) to an allowed address is refused" sh -c "! nsenter -t $(sb_pid) -a /bin/busybox ping -c 1 -W 3 10.9.0.2"
    sysctl -qw net.ipv4.ping_group_range="$sb_ping_range"
    sb_in /bin/busybox timeout 5 /bin/busybox nslookup example.org 10.9.0.2
    check "sandbox: DNS to a resolver not listed (10.9.0.2:53/udp) is refused and logged" \
        wait_for 10 sb_logged 'denied +udp +10\.9\.0\.2 +53$'

    section "sandbox: the keeper follows a name whose address changes"
    check "the sandbox keeper (aicontainers-sandbox.service) runs, wanted by $SB" systemctl is-active --quiet aicontainers-sandbox
    check "aicontainers-sandbox.service: systemd-analyze verify is clean" \
        sh -c "systemd-analyze verify --man=no aicontainers-sandbox.service 2>&1 | tee /dev/stderr | grep -q . && exit 1 || exit 0"
    check "aicontainers-sandbox.service: systemd-analyze security rates it OK or better" \
        sh -c "systemd-analyze security --no-pager aicontainers-sandbox.service | tail -1 | tee /dev/stderr | grep -Eq ' (SAFE|OK) '"
    check "moving.sbx.test:80 (DNS: 10.9.0.3, TTL 2 s) answers from inside" sb_get http://moving.sbx.test/
    echo 10.9.0.4 > /tmp/sbx-dns.addr
    check "after the DNS answer changes to 10.9.0.4: the container's /etc/hosts follows (rewritten in place)" \
        wait_for 30 sb_in /bin/busybox grep -q '^10.9.0.4.moving.sbx.test$' /etc/hosts
    check "moving.sbx.test:80 answers at its new address" sb_get http://moving.sbx.test/
    check "the old address (10.9.0.3:80) is refused now" sb_refused http://10.9.0.3/
    check "Service1.SandboxAllowed holds the new address, not the old" sh -c \
        "busctl get-property org.aicontainers.Agent1 /org/aicontainers/Agent1/service/$SB org.aicontainers.Service1 SandboxAllowed | grep -F '\"10.9.0.4\" \"tcp\" 80' | grep -vF 10.9.0.3"
    check "the keeper's journal says what changed" sh -c \
        "journalctl -b -u aicontainers-sandbox --no-pager -o cat | grep -F 'sandbox: $SB: names resolved again' | grep -F 'tcp 10.9.0.4:80'"

    section "sandbox: every attempt in the journal with its verdict"
    check "aictl sandbox log: the allowed TCP connection" wait_for 10 sb_logged 'allowed +tcp +10\.9\.0\.2 +80$'
    check "aictl sandbox log: the refused port" sb_logged 'denied +tcp +10\.9\.0\.2 +81$'
    check "aictl sandbox log: the refused IPv6 port" sb_logged 'denied +tcp +fd09::2 +81$'
    check "aictl sandbox log: the refused host" sb_logged 'denied +tcp +10\.0\.2\.15 +22$'
    check "aictl sandbox log: the allowed UDP flow" sb_logged 'allowed +udp +10\.9\.0\.2 +5353$'
    check "aictl sandbox log: the refused UDP port and UDP where only TCP is listed" \
        sh -c "aictl sandbox log $SB | grep -E 'denied +udp +10\.9\.0\.2 +5354$' && aictl sandbox log $SB | grep -E 'denied +udp +10\.9\.0\.2 +80$'"
    check "aictl sandbox log: ICMP refused" sb_logged 'denied +icmp +10\.9\.0\.2 +-$'
    aictl sandbox log "$SB" 2>&1 | tail -12 | sed 's/^/    > /'
    check "journalctl -u $SB SANDBOX_VERDICT=denied: the refused port with its fields (the agent's entry, attributed to the unit)" sb_denied_entry
    check "journalctl -u $SB SANDBOX_VERDICT=allowed: the allowed connection, and no denied one among them" sb_allowed_entries
    check "the ICMP verdict has no PORT= field" sb_icmp_entry
    # A line written to /dev/kmsg by root, even with the kernel facility asked for (<0>), gets
    # facility user: it is not the kernel's, and never forwarded.
    echo "<0>aicontainers deny $SB IN= OUT=sbx0 SRC=10.9.0.1 DST=10.66.6.6 LEN=60 PROTO=TCP SPT=1 DPT=666 SYN" > /dev/kmsg
    sb_refused http://10.9.0.2:81/
    check "every kernel line of $SB's verdicts is forwarded exactly once" wait_for 30 sb_forwarded_once
    check "a verdict line forged through /dev/kmsg is not forwarded" sb_forged_not_forwarded
    check "Service1.SandboxVerdicts counts allowed and denied connections since the start" sb_counted 1 1
    check "Service1.SandboxAllowed holds the resolved allow set (the name's address, IPv6, UDP)" sb_allowed_set
    check "aictl status $SB shows the counters" sh -c "aictl status $SB | tee /dev/stderr | grep -E '  sandboxed [1-9][0-9]*/[1-9][0-9]*  '"

    section "sandbox: it holds after restarts"
    check "systemctl restart $SB" systemctl restart "$SB"
    check "Service1.SandboxVerdicts starts again from the restart" sb_zero
    sb_core_checks "after systemctl restart"
    check "only the running unit's cgroup is in the sets (the old one was taken out)" \
        sh -c "[ \$(nft -j list set inet aicontainers sandboxed | jq '[.nftables[].set.elem // empty | .[]] | length') = 1 ]"
    check "systemctl restart aicontainersd" systemctl restart aicontainersd
    sb_refused http://10.9.0.2:81/
    check "after the agent restarts: each verdict still forwarded once (none lost, none twice)" wait_for 30 sb_forwarded_once
    check "after the agent restarts: the counters still count the current run" wait_for 10 sb_counted 1 1
    check "sandbox (after the agent restarts): 10.9.0.2:81 still refused" sb_refused http://10.9.0.2:81/
    check "sandbox (after the agent restarts): target.sbx.test:80 still answers" sb_get http://target.sbx.test/

    section "sandbox: fails closed"
    check "nft flush table inet aicontainers" nft flush table inet aicontainers
    check "sandbox (table flushed): the allowed destination is refused too" sb_refused http://10.9.0.2/
    check "nft delete table inet aicontainers" nft delete table inet aicontainers
    check "sandbox (table deleted): the keeper puts it back, and the allowed destination answers" \
        wait_for 30 sb_get http://target.sbx.test/
    check "sandbox (table put back): other destinations stay refused" sb_refused http://10.9.0.2:81/
    check "nft flush ruleset" nft flush ruleset
    check "sandbox (ruleset flushed): the keeper puts both tables back with the running unit's cgroup" \
        wait_for 30 sb_guarded
    check "sandbox (ruleset put back): target.sbx.test:80 answers" wait_for 30 sb_get http://target.sbx.test/
    check "sandbox (ruleset put back): 10.9.0.2:81 refused" sb_refused http://10.9.0.2:81/
    check "sandbox (ruleset put back): the keeper's journal says so" sh -c \
        "journalctl -b -u aicontainers-sandbox --no-pager -o cat | grep -F 'sandbox: $SB: its rules are in place again'"
    check "systemctl stop aicontainers-sandbox (no keeper)" systemctl stop aicontainers-sandbox
    check "nft delete table inet aicontainers (no keeper)" nft delete table inet aicontainers
    check "sandbox (table deleted, no keeper): the allowed destination is refused too (the guard table)" sb_refused http://10.9.0.2/
    check "sandbox (table deleted, no keeper): other destinations stay refused" sb_refused http://10.9.0.2:81/
    check "systemctl restart $SB puts the tables back (and starts the keeper it wants)" systemctl restart "$SB"
    check "sandbox (tables back): target.sbx.test:80 answers again" wait_for 30 sb_get http://target.sbx.test/
    check "the keeper runs again" systemctl is-active --quiet aicontainers-sandbox
    check "a root process inside the container's namespaces cannot reach the host's ruleset (its netns is its own)" \
        sh -c "nsenter -t $(sb_pid) -a /bin/busybox ip link set lo down; nsenter -t $(sb_pid) -a /bin/busybox ip link set lo up; nft list table inet aicontainers_guard >/dev/null"
    check "sandbox (after the container's root changed its own network): 10.9.0.2:81 still refused" sb_refused http://10.9.0.2:81/

    check "systemctl stop $SB" systemctl stop "$SB"
    check "$SB left no container behind" no_container "$SB"
    check "$SB: the stopped unit's cgroup is out of the map" \
        sh -c "[ \$(nft -j list map inet aicontainers services | jq '[.nftables[].map.elem // empty | .[]] | length') = 0 ]"
    sb_untargets
else
    section "sandbox: after a reboot"
    check "target namespace again" sb_targets
    check "systemctl start $SB (tables installed by its unit)" systemctl start "$SB"
    sb_core_checks "after a reboot"
    systemctl stop "$SB"
    sb_untargets
fi
