# shellcheck shell=bash
# The Debian package (debian/). tests/e2e/run installed version N with apt before the suite
# (tests/lib.sh) and pushed version N+1, the same tree built with a higher version, to
# /root/aicontainers-next.deb.
#   first boot: what the postinst did; the upgrade to N+1 keeps running services running (same
#               systemd invocation), the model store and the GPU claims as they were;
#   after the reboot (last, since the other sections need the package): remove keeps the
#               service files, the store and the claims; purge removes what the package made
#               and nothing else; a fresh install over what purge left works again.
PKG_NEXT=/root/aicontainers-next.deb
PKG_CLAIMS=/var/lib/aicontainers/gpu-claims.json

pkg_status() { dpkg-query -W -f='${Status} ${Version}' aicontainers 2>/dev/null; }
# "UNIT INVOCATION-ID STATE" per unit: the ID changes when systemd restarts the unit.
pkg_invocations() { local u; for u in "$@"; do echo "$u $(systemctl show -P InvocationID "$u") $(systemctl is-active "$u")"; done; }
# Every path in the model store with its size and mode, hashed.
pkg_store() { find /var/lib/aicontainers/models -printf '%P %s %m\n' | sort | sha256sum; }
pkg_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }

if [ "$PHASE" = first-boot ]; then
    section "package: what the postinst did"
    check "aicontainers is installed from the package ($(pkg_status))" \
        sh -c "[ \"\$(dpkg-query -W -f='\${Status}' aicontainers)\" = 'install ok installed' ]"
    check "dpkg --verify: the installed files are the package's" dpkg --verify aicontainers
    check "the postinst enabled aicontainersd through deb-systemd-helper" \
        test -e /var/lib/systemd/deb-systemd-helper-enabled/aicontainersd.service.dsh-also
    check "the sysusers.d entry was applied: group aicontainers-admin exists" getent group aicontainers-admin
    check "the tmpfiles.d entry was applied: /run/aicontainers exists" test -d /run/aicontainers
    check "polkitd knows the package's actions" pkaction --action-id org.aicontainers.manage-services
    check "the shared libraries the binaries need are there" \
        sh -c "! ldd /usr/bin/aictl /usr/libexec/aicontainersd /usr/lib/systemd/system-generators/aicontainers-generator | grep 'not found'"

    section "package: upgrade to N+1 over N"
    check "systemctl start gpu-chat model-chat model-server (a GPU claim, a model in use)" systemctl start gpu-chat model-chat model-server
    mapfile -t pkg_units < <(systemctl list-units --plain --no-legend --state=active 'aicontainers-model@*' | awk '{ print $1 }')
    pkg_units+=(gpu-chat model-chat model-server)
    pkg_before=$(pkg_invocations "${pkg_units[@]}")
    echo "$pkg_before" | sed 's/^/    | /'
    pkg_claims=$(sha256sum < "$PKG_CLAIMS")
    pkg_store_before=$(pkg_store)
    pkg_agent=$(systemctl show -P MainPID aicontainersd)
    pkg_want=$(dpkg-deb -f "$PKG_NEXT" Version)
    check "the GPU claims name gpu-chat before the upgrade" jq -e '.claims["gpu-chat"].gpus == ["0000:41:00.0"]' "$PKG_CLAIMS"
    check "apt-get install N+1 ($pkg_want) over N" pkg_install "$PKG_NEXT"
    check "version $pkg_want is installed" sh -c "dpkg-query -W -f='\${Status} \${Version}' aicontainers | grep -qx 'install ok installed $pkg_want'"
    pkg_after=$(pkg_invocations "${pkg_units[@]}")
    check "the services and their model units were active before the upgrade" sh -c "! echo '$pkg_before' | grep -v ' active\$'"
    check "they kept running, not restarted (same invocation IDs)" test "$pkg_before" = "$pkg_after"
    check "the GPU claims are unchanged" test "$pkg_claims" = "$(sha256sum < "$PKG_CLAIMS")"
    check "the model store is unchanged" test "$pkg_store_before" = "$(pkg_store)"
    check "aicontainersd was restarted on the new version" \
        sh -c "systemctl is-active aicontainersd && [ \"\$(systemctl show -P MainPID aicontainersd)\" != '$pkg_agent' ]"
    check "aictl status (through the restarted agent) shows gpu-chat active" \
        wait_for 30 sh -c "[ \"\$(aictl status gpu-chat | awk 'NR == 2 { print \$2 }')\" = active ]"
    systemctl stop gpu-chat model-chat model-server
    return 0
fi

[ "$PHASE" = after-reboot ] || return 0
section "package: remove, purge, install again"
pkg_files=$(dpkg -L aicontainers)
# Every path under /etc, /usr and the package's state, but not the accounts' container storage.
pkg_tree() { find /etc /usr /var/lib/aicontainers -path '/var/lib/aicontainers/accounts/*' -prune -o -print | LC_ALL=C sort; }
pkg_tree > /root/pkg-tree.before
pkg_store_before=$(pkg_store)
pkg_claims=$(sha256sum < "$PKG_CLAIMS")

check "apt-get remove aicontainers" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q aicontainers
check "dpkg: removed, configuration kept" sh -c "dpkg-query -W -f='\${Status}' aicontainers | grep -qx 'deinstall ok config-files'"
check "remove: aictl, the generator and the agent are gone" \
    sh -c "[ ! -e /usr/bin/aictl ] && [ ! -e /usr/lib/systemd/system-generators/aicontainers-generator ] && [ \"\$(systemctl is-active aicontainersd)\" != active ]"
check "remove: the service files in /etc/aicontainers stay" \
    test -s /etc/aicontainers/model-server.toml -a -s /etc/aicontainers/model-server.toml.d/10-memory.toml
check "remove: the model store stays as it was" test "$pkg_store_before" = "$(pkg_store)"
check "remove: the GPU claims stay" test "$pkg_claims" = "$(sha256sum < "$PKG_CLAIMS")"

check "apt-get purge aicontainers" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q aicontainers
check "dpkg: no trace of the package" sh -c "! dpkg-query -W aicontainers"
pkg_tree > /root/pkg-tree.after
# What purge may remove: the package's files, its enablement links, the model store, the claims,
# the scans' state and the scan directories when empty.
{
    echo "$pkg_files"
    echo /etc/systemd/system/multi-user.target.wants/aicontainersd.service
    echo /etc/systemd/system/timers.target.wants/aicontainers-scan.timer
    echo /etc/aicontainers/scan
    echo /var/lib/aicontainers/advisories
    grep '^/var/lib/aicontainers/scan' /root/pkg-tree.before
    echo "$PKG_CLAIMS"
    echo /var/lib/aicontainers/.gpu-claims.lock
    grep '^/var/lib/aicontainers/models' /root/pkg-tree.before
} | LC_ALL=C sort -u > /root/pkg-tree.allowed
LC_ALL=C comm -23 /root/pkg-tree.before /root/pkg-tree.after > /root/pkg-tree.removed
check "purge removed nothing but what the package made ($(wc -l < /root/pkg-tree.removed) paths)" \
    sh -c "LC_ALL=C comm -23 /root/pkg-tree.removed /root/pkg-tree.allowed | tee /dev/stderr | grep -q . && exit 1 || exit 0"
check "purge: no file of the package is left" \
    sh -c "echo '$pkg_files' | while read -r f; do [ -d \"\$f\" ] || [ ! -e \"\$f\" ] || { echo \"left: \$f\"; exit 1; }; done"
check "purge: the model store and the GPU claims are gone" test ! -e /var/lib/aicontainers/models -a ! -e "$PKG_CLAIMS"
check "purge: the agent's enablement is gone" test ! -e /etc/systemd/system/multi-user.target.wants/aicontainersd.service
check "purge: the service files, the account and its home, the group stay" \
    sh -c "[ -s /etc/aicontainers/model-server.toml ] && id $ACCOUNT && [ -d \"\$(getent passwd $ACCOUNT | cut -d: -f6)\" ] && getent group aicontainers-admin"

check "apt-get install again after the purge" pkg_install "$PKG_NEXT"
check "the agent runs again and aictl status sees model-server" \
    wait_for 30 sh -c "systemctl is-active aicontainersd && aictl status model-server | grep -q '^model-server '"
check "the generator made model-server's unit again" \
    sh -c "systemctl cat model-server.service | grep -q '^SourcePath=/etc/aicontainers/model-server.toml$'"
check "the tmpfiles.d entry made the model store again" test -d /var/lib/aicontainers/models
