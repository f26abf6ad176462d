# shellcheck shell=bash
# aictl export kube: the exported manifest runs under `podman kube play`, rootless as the
# service's account, and the service answers; then `podman kube down` removes it.
# Sourced by guest-tests (check, ok, fail, wait_for, section, as_account, ACCOUNT, EXAMPLES).
[ "$PHASE" = first-boot ] || return 0

section "aictl export kube: the manifest runs under podman kube play, rootless"
kube_dir=$(mktemp -d)
chmod 755 "$kube_dir"
# hello on a port of its own, so that it cannot meet hello.service.
sed 's/8080/8096/g' "$EXAMPLES/hello.toml" > "$kube_dir/kube-hello.toml"
check "aictl export kube --host-ports writes a Deployment and a Service for hello" \
    sh -c "aictl export kube --host-ports '$kube_dir/kube-hello.toml' > '$kube_dir/kube-hello.yaml' 2> '$kube_dir/warnings' && grep -qx 'kind: Deployment' '$kube_dir/kube-hello.yaml' && grep -qx 'kind: Service' '$kube_dir/kube-hello.yaml'"
sed 's/^/    > /' "$kube_dir/warnings"
check "the account's UID is looked up on this host (runAsUser: $(id -u "$ACCOUNT"))" \
    grep -qx "        runAsUser: $(id -u "$ACCOUNT")" "$kube_dir/kube-hello.yaml"
check "the warnings on stderr are the # warning: comments of the manifest" \
    sh -c "[ \$(grep -c '^aictl: warning: ' '$kube_dir/warnings') = \$(grep -c '^# warning: ' '$kube_dir/kube-hello.yaml') ]"
chmod 644 "$kube_dir/kube-hello.yaml"
check "podman kube play of the manifest, as $ACCOUNT" as_account podman kube play "$kube_dir/kube-hello.yaml"
check "the service answers on 127.0.0.1:8096" \
    wait_for 60 sh -c "curl -fsS http://127.0.0.1:8096/index.html | grep -qx 'hello from aicontainers'"
kube_server_pids() { pgrep -f '^busybox httpd -f -v -p 8096'; }
check "its server runs under a UID that is not root's, in $ACCOUNT's user namespace" \
    sh -c "pids=\$(pgrep -f '^busybox httpd -f -v -p 8096') && [ -n \"\$pids\" ] && ! ps -o uid= -p \"\$(echo \$pids | tr ' ' ,)\" | grep -qx ' *0'"
ps -o user=,uid=,args= -p "$(kube_server_pids | tr '\n' , | sed 's/,$//')" 2>/dev/null | sed 's/^/    > /'
check "the container runs as UID $(id -u "$ACCOUNT") inside (runAsUser)" \
    sh -c "as_uid=\$(aictl account run $ACCOUNT -- podman exec kube-hello-pod-kube-hello id -u) && [ \"\$as_uid\" = $(id -u "$ACCOUNT") ]"
check "podman kube down removes it" as_account podman kube down "$kube_dir/kube-hello.yaml"
check "nothing answers on 127.0.0.1:8096 any more" sh -c "! curl -fsS -m 5 http://127.0.0.1:8096/index.html"
check "no pod is left" sh -c "! aictl account run $ACCOUNT -- podman pod ps --format '{{.Name}}' | grep -q kube-hello"
rm -rf "$kube_dir"
