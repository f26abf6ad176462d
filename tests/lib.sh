# shellcheck shell=bash
# Shared by tests/e2e/run, tests/demo and tests/bench/generator: build this tree, boot a fresh
# trixie VM ($AIC_VM_NAME) and install the build into it with `make install`.
# Source it from the repository root.

vm=tests/vm/vm

# Builds, boots and installs; stops the VM on exit unless KEEP_VM=1.
stage_and_boot() {
    echo "== build and stage (make install DESTDIR=build/stage)"
    rm -rf build/stage
    make -s install DESTDIR="$PWD/build/stage"
    tar -C build/stage -cf build/stage.tar .

    echo "== VM image and boot"
    $vm image
    $vm stop >/dev/null 2>&1 || true
    if [ "${KEEP_VM:-0}" != 1 ]; then
        trap '$vm stop >/dev/null 2>&1 || true' EXIT
    fi
    local t0; t0=$(date +%s)
    $vm start
    echo "   booted in $(( $(date +%s) - t0 )) s"
    $vm push build/stage.tar /root/stage.tar
    $vm ssh -- 'tar -C / --no-same-owner -xf /root/stage.tar && systemd-tmpfiles --create /usr/lib/tmpfiles.d/aicontainers.conf'
}
