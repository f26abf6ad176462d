# shellcheck shell=bash
# Shared by tests/e2e/run, tests/demo and tests/bench/*: build the Debian package of this tree,
# boot a fresh trixie VM ($AIC_VM_NAME) and install the package in it with apt, as a
# sysadmin does. Source it from the repository root.

vm=tests/vm/vm

# Builds the package (make deb: build/deb/), quietly unless it fails; sets DEB to its path.
build_deb() {
    if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh >/dev/null; then
        echo "make deb needs dpkg-dev and debhelper (apt-get install dpkg-dev debhelper; tests/run-all installs them)" >&2
        return 1
    fi
    mkdir -p build
    if ! make deb "$@" >build/deb.log 2>&1; then
        tail -n 40 build/deb.log >&2
        echo "make deb failed (whole log: build/deb.log)" >&2
        return 1
    fi
}

# Builds, boots and installs; stops the VM on exit unless KEEP_VM=1.
stage_and_boot() {
    echo "== build the Debian package (make deb)"
    build_deb DEBDIR=build/deb || return 1
    DEB=$(echo build/deb/aicontainers_*.deb)
    [ -f "$DEB" ] || { echo "no package in build/deb" >&2; return 1; }
    echo "   $DEB: $(dpkg-deb -f "$DEB" Version), Depends: $(dpkg-deb -f "$DEB" Depends)"

    echo "== VM image and boot"
    $vm image
    $vm stop >/dev/null 2>&1 || true
    if [ "${KEEP_VM:-0}" != 1 ]; then
        trap '$vm stop >/dev/null 2>&1 || true' EXIT
    fi
    local t0; t0=$(date +%s)
    $vm start
    echo "   booted in $(( $(date +%s) - t0 )) s"
    echo "== apt-get install the package in the VM"
    $vm push "$DEB" /root/aicontainers.deb
    $vm ssh -- 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/aicontainers.deb'
}
