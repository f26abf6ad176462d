# shellcheck shell=bash
# Preflight (man 7 aicontainers-preflight): each GPU unit runs `aictl preflight --unit-mode`
# before podman. Each case below breaks one thing for gpu-chat (one fake GPU from the CDI spec
# /etc/cdi/aicontainers-test.yaml, see guest-tests "fake GPUs"), then:
#   - `systemctl start gpu-chat` fails fast, with the check's id and fix in `systemctl status`;
#   - for the CDI cases, podman itself (as the account, without the preflight) fails too, so the
#     check predicts a real failure;
#   - applying the printed fix (run verbatim where it is a command) makes the start succeed.
# Everything is put back after each case, so later sections see the suite's usual state.
[ "$PHASE" = first-boot ] || return 0

section "preflight: GPU units check CDI specs, the account and the host before podman"
PF_SPEC=/etc/cdi/aicontainers-test.yaml
PF_SVC=gpu-chat
# gpu-chat has restart = "on-failure": systemd would try a failed start again (each try checks
# again) until its start limit, and `systemctl status` shows the try under way. Under emulation
# a try outlasts the start limit's interval, so the retries would not stop: they are off here.
mkdir -p /run/systemd/system/gpu-chat.service.d
printf '[Service]\nRestart=no\n' > /run/systemd/system/gpu-chat.service.d/50-preflight-test.conf
systemctl daemon-reload
cp -p "$PF_SPEC" /root/preflight-spec.orig
cp -p /etc/subuid /root/preflight-subuid.orig
pf_restore() {
    systemctl stop "$PF_SVC" >/dev/null 2>&1
    cp -p /root/preflight-spec.orig "$PF_SPEC"
    rm -f /etc/cdi/aicontainers-dup.yaml /var/run/cdi/aicontainers-test.yaml
    systemctl reset-failed "$PF_SVC" >/dev/null 2>&1
}
# The fix `aictl preflight --json` gives for check ID.
pf_fix() { aictl preflight --json "$PF_SVC" | jq -r --arg id "$1" '[.checks[] | select(.id == $id and .status == "error") | .fix][0] // empty'; }
# pf_fix_has ID TEXT: the fix of check ID contains TEXT.
pf_fix_has() { pf_fix "$1" | tee /dev/stderr | grep -qF "$2"; }
# pf_fails ID TEXT: the start fails within 30 s, and systemctl status shows the id, TEXT and a fix.
pf_fails() {
    local t0 rc
    systemctl reset-failed "$PF_SVC" >/dev/null 2>&1
    t0=$(date +%s%N)
    timeout 30 systemctl start "$PF_SVC"; rc=$?
    echo "    (systemctl start $PF_SVC exited $rc after $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || return 1
    systemctl status "$PF_SVC" --no-pager -l -n 20 > /tmp/pf-status.out
    systemctl stop "$PF_SVC"   # ends the retries
    cat /tmp/pf-status.out
    grep -F "preflight: error: $1: " /tmp/pf-status.out | grep -F "$2" | grep -qF '; fix: '
}
# pf_podman_fails TEXT: podman itself, as the account and without the preflight, fails with TEXT.
pf_podman_fails() {
    as_account podman run --rm --device example.com/gpu=0 localhost/busybox:latest true > /tmp/pf-podman.out 2>&1 && return 1
    sed 's/^/    podman: /' /tmp/pf-podman.out | tail -3
    grep -qF "$1" /tmp/pf-podman.out
}
pf_starts() { systemctl reset-failed "$PF_SVC" >/dev/null 2>&1; systemctl start "$PF_SVC" && systemctl is-active "$PF_SVC" && systemctl stop "$PF_SVC"; }
# pf_spec_device0 EDITS: the spec with device "0"'s containerEdits replaced by EDITS (YAML lines).
pf_spec_device0() {
    local card; card=$(readlink -f /dev/dri/by-path/pci-0000:81:00.0-card)
    {
        printf 'cdiVersion: 0.5.0\nkind: example.com/gpu\ndevices:\n  - name: "0"\n    containerEdits:\n'
        printf '%s\n' "$@"
        printf '  - name: "1"\n    containerEdits:\n      deviceNodes:\n        - path: /dev/dri/by-path/pci-0000:81:00.0-card\n          hostPath: %s\n' "$card"
    } > "$PF_SPEC"
}
pf_card0=$(readlink -f /dev/dri/by-path/pci-0000:41:00.0-card)
pf_node0=("      deviceNodes:" "        - path: /dev/dri/by-path/pci-0000:41:00.0-card" "          hostPath: $pf_card0")

check "aictl preflight gpu-chat passes on the healthy VM (exit 0)" sh -c "aictl preflight $PF_SVC | tee /dev/stderr"
check "gpu-chat's unit runs the preflight before podman" \
    sh -c "systemctl show -P ExecStartPre $PF_SVC | grep -F 'preflight --unit-mode --run-as $ACCOUNT --cdi example.com/gpu=0'"
check "gpu-chat's unit is ordered after nvidia-cdi-refresh.service" sh -c "systemctl show -P After $PF_SVC | grep -qw nvidia-cdi-refresh.service"
check "aictl preflight --json: every check of every service, in the documented shape" \
    sh -c "aictl preflight --json | jq -e '(.checks | length) > 0 and all(.checks[]; (keys == [\"fix\",\"id\",\"message\",\"service\",\"status\"]) and (.status | IN(\"ok\",\"warning\",\"error\",\"skipped\")))'"
check "with the preflight, gpu-chat starts" pf_starts
pf_t0=$(date +%s%N)
/usr/bin/aictl preflight --unit-mode --run-as "$ACCOUNT" --cdi example.com/gpu=0 --gpu 0000:41:00.0 --numa --podman 5.4.2 "$PF_SVC" >/dev/null
echo "    (preflight as the unit runs it, 1 GPU, under emulation: $(( ($(date +%s%N) - pf_t0) / 1000000 )) ms)"

# ---- CDI: no spec for the kind
mv "$PF_SPEC" /root/preflight-spec.moved
check "no spec: the start fails with cdi.no-spec" pf_fails cdi.no-spec "example.com/gpu=0: no CDI spec podman can load declares kind example.com/gpu"
check "no spec: podman itself fails (unresolvable CDI devices)" pf_podman_fails "unresolvable CDI devices example.com/gpu=0"
check "the journal entry has CHECK_ID= and SERVICE=" \
    sh -c "journalctl -u $PF_SVC -o verbose --no-pager CHECK_ID=cdi.no-spec | grep -qx '    SERVICE=$PF_SVC'"
mv /root/preflight-spec.moved "$PF_SPEC"
check "no spec: with the spec installed (the fix), it starts" pf_starts
pf_restore

# ---- CDI: the requested name is not in the spec
sed -i 's/name: "0"/name: "7"/' "$PF_SPEC"
check "unknown name: the start fails with cdi.unknown-device, listing the names that exist" \
    pf_fails cdi.unknown-device "it has: example.com/gpu=1, example.com/gpu=7"
check "unknown name: podman itself fails" pf_podman_fails "unresolvable CDI devices example.com/gpu=0"
check "unknown name: the fix is a daemon-reload" pf_fix_has cdi.unknown-device "systemctl daemon-reload"
systemctl daemon-reload
check "unknown name: after the daemon-reload the unit asks for example.com/gpu=7" sh -c "systemctl cat $PF_SVC | grep -q 'example.com/gpu=7'"
check "unknown name: and it starts" pf_starts
pf_restore
systemctl daemon-reload

# ---- CDI: the same device twice in one directory
cp -p "$PF_SPEC" /etc/cdi/aicontainers-dup.yaml
check "duplicate in /etc/cdi: the start fails with cdi.duplicate-device" \
    pf_fails cdi.duplicate-device "/etc/cdi/aicontainers-dup.yaml and /etc/cdi/aicontainers-test.yaml"
check "duplicate in /etc/cdi: podman itself fails" pf_podman_fails "unresolvable CDI devices example.com/gpu=0"
rm /etc/cdi/aicontainers-dup.yaml
check "duplicate: with one file removed (the fix), it starts" pf_starts
pf_restore

# ---- CDI: shadowed across /etc/cdi and /var/run/cdi (the later wins: here a broken one)
mkdir -p /var/run/cdi
sed "s|hostPath: $pf_card0|hostPath: /dev/dri/card99|" "$PF_SPEC" > /var/run/cdi/aicontainers-test.yaml
check "shadowing: the start fails, on the spec podman uses (/var/run/cdi), with cdi.missing-device-node" \
    pf_fails cdi.missing-device-node "/var/run/cdi/aicontainers-test.yaml gives the device node /dev/dri/card99"
check "shadowing: systemctl status says which file wins (cdi.shadowed-device)" \
    sh -c "grep -F 'preflight: warning: cdi.shadowed-device: example.com/gpu=0 is defined in /etc/cdi/aicontainers-test.yaml and in /var/run/cdi/aicontainers-test.yaml; podman uses /var/run/cdi/aicontainers-test.yaml' /tmp/pf-status.out"
check "shadowing: podman itself fails on /dev/dri/card99" pf_podman_fails "/dev/dri/card99"
check "shadowing: cdi.shadowed-device's fix names both files" \
    sh -c "aictl preflight --json $PF_SVC | jq -r '.checks[] | select(.id == \"cdi.shadowed-device\") | .fix' | grep -qF 'remove /etc/cdi/aicontainers-test.yaml if /var/run/cdi/aicontainers-test.yaml is the spec to use'"
rm /var/run/cdi/aicontainers-test.yaml
check "shadowing: without the shadowing spec, it starts" pf_starts
pf_restore

# ---- CDI: cdiVersion newer than podman 5.4's CDI library reads (0.8.0)
# From podman 5.5 on, the CDI library reads 1.0.0 (Debian testing's podman 5.8 starts it, and the
# preflight agrees); which later podman first reads 1.1.0 is not known to this suite yet.
pf_podman=$(dpkg-query -W -f '${Version}' podman)
if dpkg --compare-versions "$pf_podman" lt 5.5; then
    sed -i 's/^cdiVersion: .*/cdiVersion: 1.0.0/' "$PF_SPEC"
    check "cdiVersion 1.0.0: the start fails with cdi.unsupported-version" \
        pf_fails cdi.unsupported-version "cdiVersion 1.0.0 is newer than podman 5.4.2 reads (at most 0.8.0; podman 5.5.0 reads it)"
    check "cdiVersion 1.0.0: podman itself fails" pf_podman_fails "unresolvable CDI devices example.com/gpu=0"
    sed -i 's/^cdiVersion: .*/cdiVersion: 0.8.0/' "$PF_SPEC"
    check "cdiVersion 1.0.0: written as 0.8.0 (the fix), it starts" pf_starts
    pf_restore
else
    echo "# the cdiVersion case is not run: podman $pf_podman reads every cdiVersion up to 1.0.0, and this suite does not know which podman reads 1.1.0"
fi

# ---- CDI: spec unreadable by the account
chmod 600 "$PF_SPEC"
check "unreadable spec: the start fails with cdi.unreadable-spec" pf_fails cdi.unreadable-spec "is not readable by $ACCOUNT"
check "unreadable spec: podman itself fails" pf_podman_fails "unresolvable CDI devices example.com/gpu=0"
pf_fix_cmd=$(pf_fix cdi.unreadable-spec)
echo "    (fix: $pf_fix_cmd)"
check "unreadable spec: the printed fix is a command" test "$pf_fix_cmd" = "chmod a+r $PF_SPEC"
sh -c "$pf_fix_cmd"
check "unreadable spec: after the fix, it starts" pf_starts
pf_restore

# ---- CDI: a stale library path (a spec generated for another driver)
pf_spec_device0 "${pf_node0[@]}" "      mounts:" "        - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14" \
    "          containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14" "          options: [ro, nosuid, nodev, bind]"
check "stale library path: the start fails with cdi.missing-mount-source" \
    pf_fails cdi.missing-mount-source "mounts /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14, which does not exist"
check "stale library path: podman itself fails" pf_podman_fails "libcuda.so.550.54.14"
pf_restore
check "stale library path: with the spec generated again (restored), it starts" pf_starts

# ---- CDI: the persistenced socket is missing
pf_spec_device0 "${pf_node0[@]}" "      mounts:" "        - hostPath: /run/nvidia-persistenced/socket" \
    "          containerPath: /run/nvidia-persistenced/socket" "          options: [ro, nosuid, nodev, bind, noexec]"
check "missing persistenced socket: the start fails with cdi.missing-mount-source, fix nvidia-persistenced" \
    pf_fails cdi.missing-mount-source "fix: systemctl enable --now nvidia-persistenced"
check "missing persistenced socket: podman itself fails" pf_podman_fails "/run/nvidia-persistenced/socket"
mkdir -p /run/nvidia-persistenced && touch /run/nvidia-persistenced/socket   # what the daemon would create
check "missing persistenced socket: once it exists, it starts" pf_starts
rm -rf /run/nvidia-persistenced
pf_restore

# ---- CDI: a hook binary that is not installed
pf_spec_device0 "${pf_node0[@]}" "      hooks:" "        - hookName: createContainer" "          path: /usr/bin/nvidia-cdi-hook" \
    "          args: [nvidia-cdi-hook, update-ldcache]"
check "missing hook binary: the start fails with cdi.missing-hook" \
    pf_fails cdi.missing-hook "runs the hook /usr/bin/nvidia-cdi-hook, which is not an executable file"
check "missing hook binary: podman itself fails" pf_podman_fails "nvidia-cdi-hook"
pf_restore
check "missing hook binary: with the spec generated again (restored), it starts" pf_starts

# ---- CDI: a device node that does not exist
sed -i "s|hostPath: $pf_card0|hostPath: /dev/dri/card99|" "$PF_SPEC"
check "missing device node: the start fails with cdi.missing-device-node" \
    pf_fails cdi.missing-device-node "gives the device node /dev/dri/card99, which does not exist"
check "missing device node: podman itself fails" pf_podman_fails "/dev/dri/card99"
pf_restore
check "missing device node: with the spec generated again (restored), it starts" pf_starts

# ---- Rootless: lingering off
loginctl disable-linger "$ACCOUNT"
check "no linger: the start fails with rootless.linger" pf_fails rootless.linger "lingering is off for $ACCOUNT"
pf_fix_cmd=$(pf_fix rootless.linger)
check "no linger: the printed fix is a command" test "$pf_fix_cmd" = "loginctl enable-linger $ACCOUNT"
sh -c "$pf_fix_cmd"
check "no linger: after the fix, it starts" pf_starts
pf_restore

# ---- Rootless: no subordinate IDs
sed -i "/^$ACCOUNT:/d" /etc/subuid
check "no subordinate UIDs: the start fails with rootless.subids" pf_fails rootless.subids "$ACCOUNT has 0 subordinate UIDs in /etc/subuid"
pf_fix_cmd=$(pf_fix rootless.subids)
check "no subordinate UIDs: the printed fix is a command" test "$pf_fix_cmd" = "aictl account prepare $ACCOUNT"
sh -c "$pf_fix_cmd" >/dev/null
check "no subordinate UIDs: after the fix, it starts" pf_starts
# The range prepare gave may differ from the first one (useradd's accounts take ranges too): put
# the original back, and let podman pick up the mapping again.
cp -p /root/preflight-subuid.orig /etc/subuid
systemctl stop "$PF_SVC"
as_account podman system migrate >/dev/null 2>&1
pf_restore

# ---- Driver: another process holds the service's device node open (a warning: it starts)
sh -c 'exec sleep infinity' < "$pf_card0" &
pf_holder=$!
check "device in use: aictl preflight warns with driver.device-in-use, naming the PID" \
    sh -c "aictl preflight --json $PF_SVC | jq -r '.checks[] | select(.id == \"driver.device-in-use\" and .status == \"warning\") | .message' | tee /dev/stderr | grep -qF '$pf_card0 (example.com/gpu=0) is held open by PID $pf_holder (sleep'"
check "device in use: the start goes on (a warning), and systemctl status shows it" \
    sh -c "systemctl start $PF_SVC && systemctl status $PF_SVC --no-pager -l -n 30 | grep -F 'preflight: warning: driver.device-in-use: '"
kill "$pf_holder"; wait "$pf_holder" 2>/dev/null
check "device in use: once the holder is gone, no warning" \
    sh -c "aictl preflight --json $PF_SVC | jq -e '[.checks[] | select(.id == \"driver.device-in-use\")][0].status == \"ok\"'"
pf_restore

check "after the preflight cases, the spec is as it was" cmp "$PF_SPEC" /root/preflight-spec.orig
check "and gpu-chat starts" pf_starts

# ---- The agent: a spec that goes stale under a running service (no restart, no polling)
# The start above left gpu-chat's record; the agent shows it. A spec edited while gpu-chat runs
# makes the agent run aicontainers-preflight.service, and the new problem shows in `aictl status`
# and, since gpu-chat runs, as a warning in the agent's journal.
pf_status_has() { aictl status "$PF_SVC" | tee /tmp/pf-agent.out | grep -qF "$1"; }
pf_status_clean() { aictl status "$PF_SVC" > /tmp/pf-agent.out && ! grep -q "preflight error" /tmp/pf-agent.out; }
systemctl start "$PF_SVC"
check "the agent shows gpu-chat's record: no preflight error" wait_for 30 pf_status_clean
pf_since=$(date '+%Y-%m-%d %H:%M:%S')
pf_spec_device0 "${pf_node0[@]}" "      mounts:" "        - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14" \
    "          containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14" "          options: [ro, nosuid, nodev, bind]"
check "stale spec while running: aictl status shows cdi.missing-mount-source, with its fix" \
    wait_for 60 pf_status_has "$PF_SVC: preflight error: cdi.missing-mount-source: "
cat /tmp/pf-agent.out
check "stale spec while running: the agent ran aicontainers-preflight.service" \
    sh -c "journalctl -u aicontainers-preflight.service --since '$pf_since' --no-pager | grep -q 'Finished'"
check "stale spec while running: the agent's journal warns that the next start will fail" \
    sh -c "journalctl -u aicontainersd --since '$pf_since' --no-pager -p warning | grep -F '$PF_SVC is running, but its next start will fail: cdi.missing-mount-source'"
check "gpu-chat itself still runs" systemctl is-active "$PF_SVC"
cp -p /root/preflight-spec.orig "$PF_SPEC"
check "spec restored: the problem goes away from aictl status" wait_for 60 pf_status_clean
check "aicontainers-preflight.service: systemd-analyze verify is clean (man pages are not installed in the VM: --man=no)" \
    sh -c "systemd-analyze verify --man=no /usr/lib/systemd/system/aicontainers-preflight.service 2>&1 | tee /dev/stderr | grep -q . && exit 1 || exit 0"
systemd-analyze security --no-pager aicontainers-preflight.service | tail -1
pf_restore
rm -f /root/preflight-spec.orig /root/preflight-subuid.orig /run/systemd/system/gpu-chat.service.d/50-preflight-test.conf
systemctl daemon-reload
