# shellcheck shell=bash
# Image scans on the bus (docs/scan.md, "On the bus" and "Rescans on a new image"): an image
# holding trixie's zlib1g dpkg record, an OSV record for its installed version, then
#   - after `aictl scan`, the agent shows the image as an org.aicontainers.Image1 object with
#     its findings by severity (busctl), and lists it with Manager1.ListImages;
#   - a new advisory (the agent's rescan) sends NewFindings naming it (busctl monitor);
#   - the same tag rebuilt to a new image ID and the service restarted: a verdict for the new
#     ID appears with no `aictl scan` by hand (aicontainers-scan@NAME.service, started by the
#     agent); a start on an unchanged image only says it was scanned already.
# Everything is removed at the end.
[ "$PHASE" = first-boot ] || return 0

section "image scans on the bus: Image1 objects, NewFindings, a scan on a new image ID"
SB_SVC=scan-bus-demo
SB_IMG=localhost/scan-bus:latest
SB_OSV=/var/lib/aicontainers/advisories/e2e-bus
SB_STATE=/var/lib/aicontainers/scan
SB_PKG=zlib1g
SB_ID=DEBIAN-CVE-2099-5151
SB_ID2=DEBIAN-CVE-2099-5152
SB_MON=/tmp/sb-monitor.out
sb_t0=$(date +%s)
sb_src=$(dpkg-query -W -f '${source:Package}' "$SB_PKG")
sb_ver=$(dpkg-query -W -f '${source:Version}' "$SB_PKG")

# sb_osv ID: an OSV record for the installed source version (fixed in a later revision).
sb_osv() {
    mkdir -p "$SB_OSV"
    printf '{"id": "%s", "modified": "2026-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:13", "name": "%s"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "%s+zz9"}]}]}], "database_specific": {"severity": "%s"}}\n' \
        "$1" "$sb_src" "$sb_ver" "$2" > "$SB_OSV/.new" && mv "$SB_OSV/.new" "$SB_OSV/$1.json"
}
# The image ID the account's storage gives the tag, without sha256:.
sb_image_id() { as_account podman image inspect --format '{{.Id}}' "$SB_IMG" | sed 's/^sha256://'; }
sb_path() { echo "/org/aicontainers/Agent1/image/sha256_$1"; }
sb_verdict_is() { [ "$(jq -r .digest "$SB_STATE/verdict/$SB_SVC.json" 2>/dev/null)" = "sha256:$1" ]; }

# The VM image has no man(1): verify's check of the man: links cannot run there.
check "systemd-analyze verify: aicontainers-scan@.service" \
    sh -c "systemd-analyze verify --man=no aicontainers-scan@$SB_SVC.service 2>&1 | tee /dev/stderr | grep -q . && exit 1 || exit 0"

sb_build=$(mktemp -d /tmp/scan-bus.XXXXXX)
mkdir -p "$sb_build/root/var/lib/dpkg" "$sb_build/root/etc"
dpkg-query -s "$SB_PKG" > "$sb_build/root/var/lib/dpkg/status"
cp -L /etc/os-release "$sb_build/root/etc/os-release"
echo one > "$sb_build/extra"
chmod -R a+rX "$sb_build"
printf 'FROM localhost/busybox-base:latest\nCOPY root/ /\nCOPY extra /extra\n' > "$sb_build/Containerfile"
check "podman build of $SB_IMG (zlib1g's dpkg record, as $ACCOUNT)" as_account podman build -q -t "$SB_IMG" "$sb_build"
sb_old=$(sb_image_id)

sb_osv "$SB_ID" HIGH
printf '[service]\nimage = "%s"\ncommand = ["busybox", "httpd", "-f", "-p", "8098"]\nrun-as = "%s"\nrestart = "no"\n' \
    "$SB_IMG" "$ACCOUNT" > "/etc/aicontainers/$SB_SVC.toml"
systemctl daemon-reload
check "aictl scan $SB_SVC records a verdict of image $sb_old" \
    sh -c "aictl scan $SB_SVC >/dev/null; [ \"\$(jq -r .digest $SB_STATE/verdict/$SB_SVC.json)\" = sha256:$sb_old ]"

sb_findings() {
    busctl get-property org.aicontainers.Agent1 "$(sb_path "$sb_old")" org.aicontainers.Image1 Findings | tee /tmp/sb-findings.out |
        grep -E '"high" 1( |$)'
}
check "busctl: the image object shows its findings by severity (high: 1)" wait_for 60 sb_findings
cat /tmp/sb-findings.out
check "busctl: Services, Verdict and LastScan of the image object" sh -c "
    busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 Services | grep -F '\"$SB_SVC\"' &&
    busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 Verdict | grep -F '\"warn\"' &&
    busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 LastScan | grep -E '^t [1-9][0-9]{15}'"
check "busctl: Manager1.ListImages lists it" sh -c "busctl call org.aicontainers.Agent1 /org/aicontainers/Agent1 \
    org.aicontainers.Manager1 ListImages | grep -F 'sha256:$sb_old'"
check "busctl: an unprivileged account reads it too" sh -c "setpriv --reuid=nobody --regid=nogroup --clear-groups \
    busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 Id | grep -F 'sha256:$sb_old'"

# A new advisory: the agent's rescan finds it, and the image object says so.
rm -f "$SB_MON"
busctl monitor --match "type='signal',interface='org.aicontainers.Image1',member='NewFindings'" > "$SB_MON" 2>&1 &
sb_mon_pid=$!
wait_for 30 grep -q Monitoring "$SB_MON"
sb_osv "$SB_ID2" CRITICAL
check "a new advisory: NewFindings on the image object names it (busctl monitor)" \
    wait_for 300 sh -c "grep -F '$SB_ID2' $SB_MON && grep -F 'sha256_$sb_old' $SB_MON"
kill "$sb_mon_pid" 2>/dev/null; wait "$sb_mon_pid" 2>/dev/null
grep -A12 NewFindings "$SB_MON" | head -20
check "the image object now counts the critical one" wait_for 60 sh -c \
    "busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 Findings | grep -E '\"critical\" 1( |$)'"

# A start on the image scanned already: the agent's scan only asks for the ID.
check "$SB_SVC starts" sh -c "systemctl start $SB_SVC && systemctl is-active $SB_SVC"
check "the start ran aicontainers-scan@$SB_SVC, which found the image scanned already" wait_for 300 sh -c \
    "journalctl -u aicontainers-scan@$SB_SVC.service --no-pager | grep -F 'sha256:$sb_old was scanned already'"

# The same tag, a new image ID; a restart runs it, and a scan of the new ID follows by itself.
echo two > "$sb_build/extra"
check "podman build: $SB_IMG again, now another image ID" as_account podman build -q -t "$SB_IMG" "$sb_build"
sb_new=$(sb_image_id)
check "the rebuilt tag has a new image ID ($sb_old -> $sb_new)" test "$sb_new" != "$sb_old" -a -n "$sb_new"
check "$SB_SVC restarts on the new image" sh -c "systemctl restart $SB_SVC && systemctl is-active $SB_SVC"
check "a verdict of the new image ID, with no aictl scan by hand" wait_for 300 sb_verdict_is "$sb_new"
check "the agent started it: aicontainers-scan@$SB_SVC.service" \
    sh -c "journalctl -u aicontainersd --no-pager -n 300 | grep -F '$SB_SVC started; aicontainers-scan@$SB_SVC.service'"
check "busctl: the new image's object is there, the old one gone" wait_for 60 sh -c "
    busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_new") org.aicontainers.Image1 Id &&
    ! busctl get-property org.aicontainers.Agent1 $(sb_path "$sb_old") org.aicontainers.Image1 Id"

systemctl stop "$SB_SVC" >/dev/null 2>&1
rm -rf "$SB_OSV" "/etc/aicontainers/$SB_SVC.toml" "$sb_build" "$SB_MON"
rm -f "$SB_STATE/verdict/$SB_SVC.json"
systemctl daemon-reload
check "its verdict removed, the image object goes" wait_for 60 sh -c \
    "! busctl call org.aicontainers.Agent1 /org/aicontainers/Agent1 org.aicontainers.Manager1 ListImages | grep -F 'sha256:$sb_new'"
wait_for 300 sh -c "! systemctl is-active -q aicontainers-scan.service"
echo "    (this section: $(( $(date +%s) - sb_t0 )) s in the guest)"
