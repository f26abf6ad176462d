# shellcheck shell=bash
# Hostile and careless files against the real systemd and podman (issue: hardening):
# a FIFO and a device link where service files are expected never delay daemon-reload or boot,
# names that belong to podman's Quadlet files, the sysadmin's own units and init scripts are
# refused or warned about by file, an invalid service that asks to start at boot shows up
# failed after boot, and a value ending in a backslash never reaches a unit.
# Sourced by guest-tests in both phases (see README); uses its helpers.

hardening_journal() { journalctl -b -k --no-pager -o cat | grep -F "$1"; }
hardening_sysv=/usr/lib/systemd/system-generators/systemd-sysv-generator

if [ "$PHASE" = first-boot ]; then
    section "hardening: FIFOs and devices where service files are expected"
    mkfifo /etc/aicontainers/hostile-fifo.toml
    ln -s /dev/zero /etc/aicontainers/hostile-zero.toml
    mkdir -p /etc/aicontainers/hello.toml.d
    mkfifo /etc/aicontainers/hello.toml.d/50-fifo.toml
    # Bounded only so that a regression fails here instead of hanging the suite.
    check "daemon-reload returns with a FIFO and a /dev/zero link in /etc/aicontainers" \
        timeout 120 systemctl daemon-reload
    check "the other services are still generated (hello)" \
        sh -c "systemctl cat hello.service | grep -q '^SourcePath=/etc/aicontainers/hello.toml$'"
    check "the generator names the FIFO and the device in the journal" \
        sh -c "journalctl -b -k --no-pager -o cat | grep -F 'hostile-fifo.toml: is a FIFO' && journalctl -b -k --no-pager -o cat | grep -F 'hostile-zero.toml: is a character device'"
    check "aictl validate refuses the FIFO at once (exit 1, no hang)" \
        sh -c "timeout 30 aictl validate /etc/aicontainers/hostile-fifo.toml; [ \$? -eq 1 ]"
    check "aictl render returns with the FIFO beside the files" \
        sh -c "timeout 60 aictl render /etc/aicontainers/hostile-fifo.toml; [ \$? -eq 1 ]"
    rm -f /etc/aicontainers/hostile-zero.toml /etc/aicontainers/hello.toml.d/50-fifo.toml
    rmdir /etc/aicontainers/hello.toml.d 2>/dev/null || true
    # The FIFO stays for the reboot: the boot-time run must not wait on it either.

    section "hardening: an invalid service that asks to start at boot"
    cat > /etc/aicontainers/bootfail.toml <<'EOF'
[service]
image = "localhost/busybox:latest"
run-as = "aimodels"
enable = true
# Ends in a backslash: written raw it would join the next unit line (read-only off).
volumes = ["/srv:/srv\\"]
read-only = true
EOF
    check "aictl validate refuses a volume ending in a backslash" \
        sh -c "aictl validate /etc/aicontainers/bootfail.toml | grep -F 'service.volumes' | grep -F 'backslash'"
    check "daemon-reload" systemctl daemon-reload
    check "its failing unit is wanted by multi-user.target" \
        test -L /run/systemd/generator/multi-user.target.wants/bootfail.service

    section "hardening: names that belong to something else (podman Quadlet, /etc/systemd/system, init scripts)"
    mkdir -p /etc/containers/systemd/apps
    printf '[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\n' > /etc/containers/systemd/apps/qweb.container
    printf '[Volume]\n' > /etc/containers/systemd/qdata.volume
    printf '[Unit]\nDescription=the sysadmin'"'"'s own\n[Service]\nExecStart=/bin/true\n' > /etc/systemd/system/hmine.service
    printf '#!/bin/sh\n### BEGIN INIT INFO\n# Provides: hlegacy\n### END INIT INFO\nexit 0\n' > /etc/init.d/hlegacy
    chmod 755 /etc/init.d/hlegacy
    for n in qweb qdata-volume hmine hlegacy; do
        sed 's/8080/8099/g' "$EXAMPLES/hello.toml" > "/etc/aicontainers/$n.toml"
    done
    check "daemon-reload" systemctl daemon-reload
    check "qweb.service stays podman's own (SourcePath is the Quadlet file)" \
        sh -c "systemctl show -P SourcePath qweb.service | grep -Fx /etc/containers/systemd/apps/qweb.container"
    check "the generator names the Quadlet file a service collides with" \
        hardening_journal "qweb.toml: podman's Quadlet makes qweb.service from /etc/containers/systemd/apps/qweb.container"
    check "X.volume's unit name (X-volume.service) is taken too" \
        hardening_journal "qdata-volume.toml: podman's Quadlet makes qdata-volume.service from /etc/containers/systemd/qdata.volume"
    check "the sysadmin's unit wins and the generator warns, naming it" \
        sh -c "systemctl show -P FragmentPath hmine.service | grep -Fx /etc/systemd/system/hmine.service && journalctl -b -k --no-pager -o cat | grep -F 'hmine.toml: /etc/systemd/system/hmine.service exists and systemd uses it instead'"
    check "the generator refuses the init script's name, naming it" \
        hardening_journal "hlegacy.toml: the init script /etc/init.d/hlegacy is hlegacy.service"
    if [ -x "$hardening_sysv" ]; then
        check "hlegacy.service stays the init script's" \
            sh -c "systemctl show -P SourcePath hlegacy.service | grep -Fx /etc/init.d/hlegacy"
    else
        echo "note - $hardening_sysv is not installed here: the init script's own unit is not checked"
    fi
    rm -f /etc/aicontainers/{qweb,qdata-volume,hmine,hlegacy}.toml /etc/containers/systemd/apps/qweb.container \
        /etc/containers/systemd/qdata.volume /etc/systemd/system/hmine.service /etc/init.d/hlegacy
    rmdir /etc/containers/systemd/apps 2>/dev/null || true
    check "daemon-reload after removing them" systemctl daemon-reload
else
    section "hardening: after the reboot"
    check "the boot-time generator run refused the FIFO without waiting on it" \
        hardening_journal "hostile-fifo.toml: is a FIFO"
    check "model-server (enable = true) was still started at boot" wait_for 120 systemctl is-active model-server
    check "the invalid service that asks to start at boot shows up failed" \
        wait_for 60 sh -c "[ \"\$(systemctl is-failed bootfail.service)\" = failed ]"
    check "its status says why" \
        sh -c "systemctl status bootfail.service --no-pager -n 20 | grep -F 'backslash'"
    rm -f /etc/aicontainers/hostile-fifo.toml /etc/aicontainers/bootfail.toml
    check "daemon-reload after removing them" systemctl daemon-reload
    systemctl reset-failed bootfail.service 2>/dev/null || true
fi
