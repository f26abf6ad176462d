# shellcheck shell=bash
# Model cache hardening (issue 9, items 9-14) against the real system: the store's locks are
# root's alone, and the model unit has a start timeout. The hostile-server cases run on the
# host (aictl/tests/models.rs); here, what only systemd and real accounts show.
if [ "$PHASE" = first-boot ]; then
    section "model cache: locks and limits on the system"
    store=/var/lib/aicontainers/models
    check "the store's lock is mode 0600 after the pulls of the first boot" \
        sh -c "[ \"\$(stat -c %a $store/lock)\" = 600 ]"
    check "an unprivileged user cannot take the store's lock (so cannot block pulls, gc, rm)" \
        sh -c "! runuser -u aicuser -- flock -n $store/lock true"
    check "the model unit has a start timeout (12 h), not infinity" \
        sh -c "[ \"\$(systemctl show -P TimeoutStartUSec 'aicontainers-model@oci:--127.0.0.1:5000-models-tiny\\x2dchat:v1.service')\" = 12h ]"
    # flock -o: the lock is flock's own, not sleep's, so killing flock releases it.
    check "aictl model rm waits for a held lock only as long as told, naming the holder" \
        sh -c "flock -o $store/lock sleep 30 & p=\$!; sleep 1; out=\$(AICONTAINERS_MODELS_LOCK_TIMEOUT=1 aictl model rm --force oci://127.0.0.1:5000/models/none:v1 2>&1); rc=\$?; kill \$p; echo \"\$out\"; [ \$rc = 1 ] && echo \"\$out\" | grep -q 'held by pid'"
fi
