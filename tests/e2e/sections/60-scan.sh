# shellcheck shell=bash
# Image scans (docs/scan.md): an image made of a trixie package (zlib1g's files and its dpkg
# record, from this VM) built in the account's storage; an OSV record written here for the
# installed version; then
#   - `aictl scan` finds it (read as the account, the SBOM kept by image ID), `aictl sbom` prints it;
#   - the policy's `block` makes the next start fail, with the id and the fixed version in
#     `systemctl status`; an allowlist entry lets it start; an expired one no longer does;
#   - a change to the advisory directory makes the agent start a rescan (no restart of anything),
#     and `stop` stops the running service that now fails;
#   - the timer and the scan unit are installed as documented.
# Everything is removed at the end, so later sections see the suite's usual state.
[ "$PHASE" = first-boot ] || return 0

section "image scans: trixie packages, OSV advisories, the policy and the start gate"
SC_SVC=scan-demo
SC_IMG=localhost/scan-trixie:latest
SC_POLICY=/etc/aicontainers/scan/policy.toml
SC_OSV=/var/lib/aicontainers/advisories/e2e
SC_STATE=/var/lib/aicontainers/scan
SC_PKG=zlib1g
sc_src=$(dpkg-query -W -f '${source:Package}' "$SC_PKG")
sc_ver=$(dpkg-query -W -f '${source:Version}' "$SC_PKG")
# Above the installed version in dpkg's order (a later revision).
SC_FIXED="${sc_ver}+zz9"
SC_ID=DEBIAN-CVE-2099-4242
echo "    ($SC_PKG from source $sc_src $sc_ver; the record says fixed in $SC_FIXED)"

# The image: busybox (for a command to run) plus zlib1g's files and dpkg record from this VM.
sc_build=$(mktemp -d /tmp/scan-image.XXXXXX)
chmod 755 "$sc_build"
mkdir -p "$sc_build/root/var/lib/dpkg" "$sc_build/root/etc"
dpkg-query -s "$SC_PKG" > "$sc_build/root/var/lib/dpkg/status"
cp -L /etc/os-release "$sc_build/root/etc/os-release"
dpkg -L "$SC_PKG" | while read -r f; do [ -f "$f" ] && cp -a --parents "$f" "$sc_build/root/"; done
chmod -R a+rX "$sc_build"
printf 'FROM localhost/busybox-base:latest\nCOPY root/ /\n' > "$sc_build/Containerfile"
check "podman build of $SC_IMG from trixie's $SC_PKG (as $ACCOUNT)" as_account podman build -q -t "$SC_IMG" "$sc_build"

printf '[service]\nimage = "%s"\ncommand = ["busybox", "httpd", "-f", "-p", "8097"]\nrun-as = "%s"\nrestart = "no"\n' \
    "$SC_IMG" "$ACCOUNT" > "/etc/aicontainers/$SC_SVC.toml"
systemctl daemon-reload
check "the generator took no file of /etc/aicontainers/scan for a service" sh -c "! systemctl cat policy.service 2>/dev/null"
check "$SC_SVC's unit runs the scan gate" \
    sh -c "systemctl show -P ExecStartPre $SC_SVC | grep -F 'scan-gate $SC_SVC $SC_IMG'"
check "the scan timer is enabled, randomized and persistent" sh -c "systemctl is-enabled aicontainers-scan.timer \
    && [ \"\$(systemctl show -P RandomizedDelayUSec aicontainers-scan.timer)\" != 0 ] \
    && [ \"\$(systemctl show -P Persistent aicontainers-scan.timer)\" = yes ]"
# The VM image has no man(1): verify's check of the man: links cannot run there.
check "systemd-analyze verify: the scan units" \
    sh -c "systemd-analyze verify --man=no aicontainers-scan.service aicontainers-scan.timer 2>&1 | tee /dev/stderr | grep -q . && exit 1 || exit 0"
echo "    (systemd-analyze security aicontainers-scan.service: $(systemd-analyze security aicontainers-scan.service 2>/dev/null | tail -1))"

sc_restore() { systemctl stop "$SC_SVC" >/dev/null 2>&1; systemctl reset-failed "$SC_SVC" >/dev/null 2>&1; }
sc_starts() { sc_restore; systemctl start "$SC_SVC" && systemctl is-active "$SC_SVC"; }
# sc_fails TEXT...: the start fails, and `systemctl status` shows every TEXT.
sc_fails() {
    local t
    sc_restore
    systemctl start "$SC_SVC" && return 1
    systemctl status "$SC_SVC" --no-pager -l -n 30 > /tmp/sc-status.out
    cat /tmp/sc-status.out
    for t in "$@"; do grep -qF -- "$t" /tmp/sc-status.out || { echo "missing: $t"; return 1; }; done
}
sc_policy() { mkdir -p /etc/aicontainers/scan; printf '%s\n' "$@" > "$SC_POLICY"; }
sc_verdict_has() { jq -e --arg id "$1" '.findings | any(.id == $id)' "$SC_STATE/verdict/$SC_SVC.json" >/dev/null; }

sc_never() { sc_starts && journalctl -u "$SC_SVC" -n 50 --no-pager | grep -F 'not scanned yet'; }
check "never scanned: the start goes on, saying so" sc_never
sc_restore

mkdir -p "$SC_OSV"
cat > "$SC_OSV/$SC_ID.json" <<EOF
{"id": "$SC_ID", "aliases": ["CVE-2099-4242"], "modified": "2026-01-01T00:00:00Z",
 "affected": [{"package": {"ecosystem": "Debian:13", "name": "$sc_src"},
   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "$SC_FIXED"}]}]}],
 "database_specific": {"severity": "HIGH"}}
EOF
check "aictl scan $SC_SVC --json reports the advisory, with its fixed version" \
    sh -c "aictl scan $SC_SVC --json | tee /tmp/sc-scan.json | jq -e --arg id $SC_ID --arg fixed '$SC_FIXED' \
        '.services[0].findings | any(.id == \$id and .fixed == \$fixed and .package == \"$SC_PKG\" and .installed == \"$sc_ver\")'"
check "the SBOM is kept by image ID, and a rescan does not inventory again" sh -c "
    id=\$(aictl account run $ACCOUNT -- podman image inspect --format '{{.Id}}' $SC_IMG) &&
    test -s $SC_STATE/sbom/sha256-\$id.cdx.json &&
    aictl scan $SC_SVC --json | jq -e '.services[0].cached == true'"
check "aictl scan (every service) lists $SC_SVC with its counts" \
    sh -c "aictl scan | tee /dev/stderr | grep -E '^$SC_SVC +[0-9a-f]{12} +0 +1 '"
check "aictl sbom $SC_SVC prints CycloneDX with $SC_PKG" \
    sh -c "aictl sbom $SC_SVC | jq -e '.bomFormat == \"CycloneDX\" and (.components | any(.name == \"$SC_PKG\"))'"
# Three scans so far, one of them with a new finding: one entry, with its fields, under the unit.
sc_new_entry() {
    journalctl -u "$SC_SVC" MESSAGE_ID=f53e27b38f584d54a8545a9515262074 ADVISORY="$SC_ID" -o json --no-pager > /tmp/sc-new.json &&
        jq -se --arg svc "$SC_SVC" --arg pkg "$SC_PKG" --arg fixed "$SC_FIXED" \
            'length == 1 and .[0].SERVICE == $svc and .[0].PACKAGE == $pkg and .[0].FIXED == $fixed and .[0].SEVERITY == "high"' /tmp/sc-new.json
}
check "the new finding is in the journal once (journalctl -u $SC_SVC MESSAGE_ID=...), with its fields" wait_for 15 sc_new_entry

sc_policy '[policy]' 'severity = "high"' 'action = "block"'
check "policy block: the start fails, naming the advisory and its fixed version" \
    sc_fails "$SC_ID (CVE-2099-4242)" "fixed in $SC_FIXED" "start refused by the scan policy (action block)"
sc_t0=$(date +%s%N)
for _ in 1 2 3 4 5 6 7 8 9 10; do /usr/bin/aictl scan-gate "$SC_SVC" "$SC_IMG" 2>/dev/null; done
echo "    (the gate, 10 runs under emulation: $(( ($(date +%s%N) - sc_t0) / 10000000 )) ms each)"

sc_tomorrow=$(date -u -d tomorrow +%F)
sc_yesterday=$(date -u -d yesterday +%F)
sc_policy '[policy]' 'action = "block"' '[[allow]]' 'id = "CVE-2099-4242"' "service = \"$SC_SVC\"" \
    "expires = $sc_tomorrow" 'reason = "e2e: zlib is not reachable from the network"'
check "an allowlist entry (until $sc_tomorrow) lets it start" sc_starts
sc_restore
sc_policy '[policy]' 'action = "block"' '[[allow]]' 'id = "CVE-2099-4242"' "service = \"$SC_SVC\"" \
    "expires = $sc_yesterday" 'reason = "e2e: zlib is not reachable from the network"'
check "after the entry's expiry ($sc_yesterday) the start fails again, saying it expired" \
    sc_fails "$SC_ID" "expired on $sc_yesterday" "fixed in $SC_FIXED"
sc_policy '[policy]' 'action = "blok"'
check "a broken policy refuses the start, naming file, line and key" \
    sc_fails "$SC_POLICY:2:10: policy.action: \`blok\` is not one of warn, block, stop"

# A change to the advisory directory: the agent starts aicontainers-scan.service by itself.
sc_policy '[policy]' 'action = "warn"'
check "with action warn, it starts" sc_starts
sc_agent_pid=$(systemctl show -P MainPID aicontainersd)
sc_svc_pid=$(systemctl show -P MainPID "$SC_SVC")
sed -e 's/4242/4243/g' "$SC_OSV/$SC_ID.json" > "$SC_OSV/.new" && mv "$SC_OSV/.new" "$SC_OSV/DEBIAN-CVE-2099-4243.json"
check "a new advisory file makes a rescan that records it (no restart, no command)" \
    wait_for 300 sc_verdict_has DEBIAN-CVE-2099-4243
check "the rescan ran as aicontainers-scan.service, started by the agent" \
    sh -c "journalctl -u aicontainersd --no-pager -n 200 | grep -F 'the advisories or the scan policy changed' && journalctl -u aicontainers-scan.service --no-pager -n 50 | grep -F $SC_SVC"
check "neither the agent nor $SC_SVC restarted" \
    sh -c "[ \"\$(systemctl show -P MainPID aicontainersd)\" = $sc_agent_pid ] && [ \"\$(systemctl show -P MainPID $SC_SVC)\" = $sc_svc_pid ]"
sc_policy '[policy]' 'action = "stop"'
check "policy stop: the running service that fails is stopped by the rescan the change started" \
    wait_for 300 sh -c "! systemctl is-active -q $SC_SVC"
check "the rescan said why it stopped it" \
    sh -c "journalctl -u aicontainers-scan.service --no-pager -n 50 | grep -F '$SC_SVC: fails the scan policy (action stop): stopping it'"

sc_restore
rm -rf "$SC_OSV" "$SC_POLICY" "/etc/aicontainers/$SC_SVC.toml" "$sc_build"
systemctl daemon-reload
wait_for 300 sh -c "! systemctl is-active -q aicontainers-scan.service"
aictl scan >/dev/null 2>&1
check "aictl scan forgets the verdicts of services that are gone" test ! -e "$SC_STATE/verdict/$SC_SVC.json"
