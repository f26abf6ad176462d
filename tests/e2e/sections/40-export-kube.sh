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
# Inside the user namespace, UID N is subordinate UID START+N-1 of the account on the host.
kube_uid=$(id -u "$ACCOUNT")
kube_host_uid=$(( $(awk -F: -v a="$ACCOUNT" '$1 == a { print $2; exit }' /etc/subuid) + kube_uid - 1 ))
check "its server runs on the host as $ACCOUNT's subordinate UID $kube_host_uid, not root" \
    sh -c "[ \"\$(ps -o uid= -p \"\$(pgrep -d, -f '^busybox httpd -f -v -p 8096')\" | tr -d ' ' | sort -u)\" = $kube_host_uid ]"
check "the container runs as UID $(id -u "$ACCOUNT") inside (runAsUser)" \
    sh -c "as_uid=\$(aictl account run $ACCOUNT -- podman exec kube-hello-pod-kube-hello id -u) && [ \"\$as_uid\" = $(id -u "$ACCOUNT") ]"
check "podman kube down removes it" as_account podman kube down "$kube_dir/kube-hello.yaml"
check "nothing answers on 127.0.0.1:8096 any more" sh -c "! curl -fsS -m 5 http://127.0.0.1:8096/index.html"
check "no pod is left" sh -c "! aictl account run $ACCOUNT -- podman pod ps --format '{{.Name}}' | grep -q kube-hello"

# model-server as a Pod: environment, limits, read-only root, restart policy, stop timeout and an
# init as PID 1 reach podman as they reach the systemd service.
sed 's/8081/8097/g' "$EXAMPLES/model-server.toml" > "$kube_dir/kube-server.toml"
cp -r "$EXAMPLES/model-server.toml.d" "$kube_dir/kube-server.toml.d"
aictl export kube --kind pod --host-ports "$kube_dir/kube-server.toml" > "$kube_dir/kube-server.yaml" 2>/dev/null
chmod 644 "$kube_dir/kube-server.yaml"
check "podman kube play of model-server exported as a Pod" as_account podman kube play "$kube_dir/kube-server.yaml"
check "it answers on 127.0.0.1:8097" wait_for 60 curl -fsS http://127.0.0.1:8097/index.html
check "the environment arrives (CTX_SIZE=8192, THREADS=4)" \
    sh -c "env=\$(aictl account run $ACCOUNT -- podman exec kube-server-kube-server busybox env) && echo \"\$env\" | grep -qx CTX_SIZE=8192 && echo \"\$env\" | grep -qx THREADS=4"
check "memory 768M (the drop-in), 1.5 CPUs, restart on-failure, stop timeout 30 s" \
    sh -c "[ \"\$(aictl account run $ACCOUNT -- podman inspect kube-server-kube-server --format '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}} {{.Config.StopTimeout}}')\" = '805306368 1500000000 on-failure 30' ]"
check "read-only = true: the root filesystem is read-only (and /tmp is not)" \
    as_account podman exec kube-server-kube-server busybox sh -c 'busybox touch /tmp/probe && ! busybox touch /probe'
check "init = true: an init is PID 1 and the server is not" \
    sh -c "pid1=\$(aictl account run $ACCOUNT -- podman exec kube-server-kube-server busybox cat /proc/1/comm) && echo \"PID 1: \$pid1\" && [ -n \"\$pid1\" ] && [ \"\$pid1\" != busybox ]"
check "podman kube down removes model-server's pod" as_account podman kube down "$kube_dir/kube-server.yaml"
rm -rf "$kube_dir"
