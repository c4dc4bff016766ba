#!/usr/bin/env bash
# Sourced by kind-e2e/run.sh after tests/e2e/scenarios.sh: what only real
# nodes show. Uses run.sh's driver (e2e_*, nodes_cached, cluster, opns, s3,
# work, bindir, owned_label, token_ttl) and scenarios.sh's helpers.
# shellcheck disable=SC2154 # the variables above come from run.sh

all_nodes_ready() {
        local s
        s=$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
        [[ -n $s && $(grep -vc '^True$' <<<"$s") -eq 0 ]]
}

# The object store's image, from the cached versitygw binary: no registry.
s3_image_build() {
        local d tag
        tag="ballast-e2e-versitygw:$("$bindir/versitygw" --version | grep -o 'v[0-9][0-9.]*' | head -n1)"
        d=$(mktemp -d "${TMPDIR:-/tmp}/ballast-s3.XXXXXX")
        cp -L "$bindir/versitygw" "$d/"
        printf '%s\n' 'FROM scratch' 'COPY versitygw /usr/local/bin/versitygw' 'WORKDIR /data' \
                'ENTRYPOINT ["/usr/local/bin/versitygw"]' >"$d/Dockerfile"
        docker build -q --label "$owned_label" -t "$tag" "$d" >/dev/null 2>&1 || fail "cannot build $tag"
        rm -rf "$d"
        printf '%s\n' "$tag"
}

sa_of() { # COMPONENT -> the ServiceAccount its pods run as
        kubectl -n "$opns" get pods -l "app.kubernetes.io/instance=ballast,app.kubernetes.io/component=$1" \
                -o jsonpath='{.items[0].spec.serviceAccountName}'
}

pods_of() { # COMPONENT -> "pod node" lines
        kubectl -n "$opns" get pods -l "app.kubernetes.io/instance=ballast,app.kubernetes.io/component=$1" \
                -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}'
}

# ---- least privilege, as each ServiceAccount itself -----------------------------

# kubectl with only a ServiceAccount's token: no client certificate, no
# impersonation, so what is checked is what the agents and the operator get.
as_sa() { # SA ARGS...
        local sa=$1
        shift
        kubectl --kubeconfig=/dev/null --server="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')" \
                --certificate-authority="$work/ca.crt" --token="${sa_token[$sa]}" "$@"
}

scenario_rbac() {
        say "kind: kubectl auth can-i as each ServiceAccount shows the least privilege helm/ballast/README.md claims"
        declare -gA sa_token
        kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$work/ca.crt"
        sa_token[agent]=$(kubectl -n "$opns" create token "$(sa_of agent)" --duration=10m) || fail "no token for the agents' ServiceAccount"
        sa_token[operator]=$(kubectl -n "$opns" create token "$(sa_of operator)" --duration=10m) || fail "no token for the operator's ServiceAccount"
        local cb=configbundles.ballast.dev lease=leases.coordination.k8s.io t want sa verb res ns name sub got bad=0
        # want identity verb resource namespace name subresource ("-": none).
        # The operator watches only $E2E_APPS here (operator.watchNamespace),
        # so its ConfigBundle rights are a Role there and nothing elsewhere.
        for t in \
                "yes agent list nodes - - -" "yes agent watch nodes - - -" "yes agent get nodes - - -" \
                "yes agent get configmaps $opns - -" "yes agent watch configmaps $opns - -" \
                "no agent create configmaps $opns - -" "no agent get configmaps default - -" \
                "no agent get secrets $opns - -" "no agent patch nodes - - -" "no agent update nodes - - -" \
                "no agent list $cb $E2E_APPS - -" "no agent create events $opns - -" \
                "no agent create $lease $opns - -" "no agent list pods $opns - -" \
                "yes operator watch $cb $E2E_APPS - -" "yes operator patch $cb $E2E_APPS - status" \
                "yes operator update $cb $E2E_APPS - finalizers" "no operator watch $cb default - -" \
                "no operator create $cb $E2E_APPS - -" "no operator delete $cb $E2E_APPS - -" \
                "yes operator create events $E2E_APPS - -" "yes operator patch configmaps $opns - -" \
                "yes operator delete configmaps $opns - -" "no operator get configmaps default - -" \
                "yes operator create $lease $opns - -" "yes operator update $lease $opns ballast-operator -" \
                "no operator update $lease $opns other-lease -" "no operator get secrets $opns - -" \
                "no operator list secrets $opns - -" "no operator list nodes - - -" "no operator create pods $opns - -"; do
                read -r want sa verb res ns name sub <<<"$t"
                ns=${ns#-} name=${name#-} sub=${sub#-}
                got=$(as_sa "$sa" auth can-i "$verb" "$res${name:+/$name}" ${ns:+-n "$ns"} ${sub:+--subresource="$sub"} </dev/null 2>/dev/null) || true
                if [[ $got != "$want" ]]; then
                        printf '[e2e]     can-i as %s: %s %s%s%s%s: %s, want %s\n' "$sa" "$verb" "$res" \
                                "${name:+/$name}" "${sub:+ ($sub)}" "${ns:+ in $ns}" "${got:-error}" "$want" >&2
                        bad=$((bad + 1))
                fi
        done
        [[ $bad -eq 0 ]] || fail "$bad can-i answers differ from the README's claims"
        step "31 can-i answers as the README claims, each asked with the ServiceAccount's own token"
        step "the agent's own token is refused writes to the API server"
        ! as_sa agent -n "$opns" create configmap can-i-probe --from-literal=a=b >/dev/null 2>&1 ||
                fail "the agent's ServiceAccount could create a ConfigMap"
}

# ---- the operator's pods: non-root, read-only root ------------------------------

scenario_operator_pods() {
        say "kind: the operator pods run non-root with a read-only root file system"
        local pod node pid uids u root count=0
        while read -r pod node; do
                [[ -n $pod ]] || continue
                for pid in $(docker exec "$node" pgrep -x ballast-operato); do
                        uids=$(docker exec "$node" awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
                        for u in $uids; do
                                [[ $u != 0 ]] || fail "$pod: ballast-operator runs with uids '$uids' (root among them)"
                        done
                        root=$(docker exec "$node" awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
                        [[ ,$root, == *,ro,* ]] || fail "$pod: the root file system is mounted '$root', not read-only"
                        step "$pod on $node: pid $pid, uids $uids, / mounted $root"
                        count=$((count + 1))
                done
        done < <(pods_of operator)
        [[ $count -ge 2 ]] || fail "found $count ballast-operator processes on the nodes, want the 2 replicas"
}

# ---- API-server outage: no agent restarted by its own probes --------------------

agent_restarts() { # -> "pod=restarts ..." for every agent pod
        kubectl -n "$opns" get pods -l app.kubernetes.io/component=agent \
                -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}'
}
agent_containers() { # -> "node=container-id ..." read from each node's runtime
        local n
        for n in "${nodes_cached[@]}"; do printf '%s=%s ' "$n" "$(agent_container "$n")"; done
}

scenario_api_outage_no_restarts() {
        local before ids_before probe window
        before=$(agent_restarts)
        ids_before=$(agent_containers)
        scenario_api_outage
        # Longer than the liveness probe can fail before the kubelet acts.
        probe=$(kubectl -n "$opns" get ds -l app.kubernetes.io/component=agent \
                -o jsonpath='{.items[0].spec.template.spec.containers[0].livenessProbe.periodSeconds} {.items[0].spec.template.spec.containers[0].livenessProbe.failureThreshold}')
        read -r p f <<<"$probe"
        window=$((${p:-10} * ${f:-3} + 10))
        step "the API server paused for ${window}s, longer than the liveness probe's failure window (${p}s x ${f})"
        e2e_api_pause
        sleep "$window"
        [[ $(agent_containers) == "$ids_before" ]] || { e2e_api_resume; fail "an agent container was replaced during the outage: $ids_before -> $(agent_containers)"; }
        e2e_api_resume
        wait_until 60 "the API server answers again" kubectl get --raw /readyz
        step "no agent container was restarted: $before"
        [[ $(agent_restarts) == "$before" ]] || fail "agent restart counts changed: $before -> $(agent_restarts)"
}

# ---- the projected token rotates; the agents keep their API access --------------

token_path() { # NODE POD -> the token file the kubelet keeps for the pod
        local uid
        uid=$(kubectl -n "$opns" get pod "$2" -o jsonpath='{.metadata.uid}')
        docker exec "$1" sh -c "ls /var/lib/kubelet/pods/$uid/volumes/kubernetes.io~projected/*/token" | head -n1
}

token_record() {
        declare -gA token_first token_file
        local pod node
        while read -r pod node; do
                [[ -n $pod ]] || continue
                token_file[$node]=$(token_path "$node" "$pod")
                token_first[$node]=$(docker exec "$node" cat "${token_file[$node]}")
                [[ -n ${token_first[$node]} ]] || fail "no projected token for $pod on $node"
        done < <(pods_of agent)
}

token_exp() { # TOKEN -> its exp claim (seconds since the epoch)
        local p
        p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
        while ((${#p} % 4)); do p+="="; done
        base64 -d <<<"$p" | jq -r .exp
}

api_status_with() { # TOKEN -> the HTTP status of an authenticated request
        curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.crt" -H "Authorization: Bearer $1" \
                "$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')/api/v1/namespaces/$opns/configmaps?limit=1"
}

scenario_token_rotation() {
        say "kind: the agents' projected tokens (${token_ttl}s) rotate and expire; the agents keep reading the API"
        local node left first exp
        first=${!token_first[*]}
        first=${first%% *}
        # The API server accepts a token up to a minute past its exp (the JWT
        # library's leeway).
        exp=$(token_exp "${token_first[$first]}")
        [[ $exp =~ ^[0-9]+$ ]] || fail "the agent's token on $first has no exp claim"
        left=$((exp + 65 - $(date +%s)))
        if [[ $left -gt 0 ]]; then
                step "waiting ${left}s until the first tokens have expired (and the minute of leeway)"
                sleep "$left"
        fi
        for node in "${!token_first[@]}"; do
                [[ $(docker exec "$node" cat "${token_file[$node]}") != "${token_first[$node]}" ]] ||
                        fail "the kubelet did not rotate the agent's token on $node"
        done
        step "the kubelet rotated every agent's token; the first one is now refused"
        [[ $(api_status_with "${token_first[$first]}") == 401 ]] ||
                fail "the agent's first token on $first is still accepted after ${token_ttl}s"
        step "the API server restarts, so every agent opens new watches with the token it holds now"
        local before
        before=$(sum_metric 'ballast_agent_kube_requests_total{verb="watch"}')
        docker exec "$cluster-control-plane" sh -c 'kill $(pidof kube-apiserver)'
        sleep 5
        wait_until 120 "the API server is back" kubectl get --raw /readyz
        e2e_store_stop
        step "with the object store down, a change reaches the agents through their new watches"
        apply_web "token"
        wait_until 90 "web 'token' on the web nodes through the API server alone" web_nodes_have "token"
        e2e_store_start
        [[ $(sum_metric 'ballast_agent_kube_requests_total{verb="watch"}') -gt $before ]] ||
                fail "the agents opened no new watch after the API server restarted"
}

# ---- the host service: a node restarted during an outage ------------------------

host_node() { workers | tail -n1; }
node_exec() { docker exec "$(host_node)" "$@"; }
node_write() { docker exec -i "$(host_node)" sh -c "cat >$1"; } # PATH < content
host_agent_ready() { node_exec curl -sf http://127.0.0.1:8082/readyz >/dev/null; }
no_pods_running() { [[ -z $(node_exec crictl ps -q 2>/dev/null) ]]; }
host_file_is() { [[ $(node_exec cat "/etc/ballast/$E2E_APPS/$1" 2>/dev/null) == "$2" ]]; }

apply_host_bundle() { # TEXT: a bundle on every node
        cb apply -f - <<YAML
apiVersion: ballast.dev/v1alpha1
kind: ConfigBundle
metadata: {name: hostsvc}
spec:
  files:
    - {path: note, content: "$1"}
YAML
}

scenario_host_service_reboot() {
        local n
        n=$(host_node)
        say "kind: $n runs the agent as the host service of docs/agent.md and restarts during an outage"
        step "the DaemonSet leaves $n (label ballast.dev/agent=host), the host service takes its cache over"
        kubectl label node "$n" ballast.dev/agent=host --overwrite >/dev/null
        wait_until 90 "no agent pod on $n" sh -c "! kubectl -n $opns get pods -l app.kubernetes.io/component=agent -o wide | grep -qw $n"
        docker rm -f "$cluster-agent-bin" >/dev/null 2>&1 || true
        docker create --name "$cluster-agent-bin" --label "$owned_label" "ballast-agent:$version" >/dev/null
        docker cp "$cluster-agent-bin:/usr/local/bin/ballast-agent" "$work/ballast-agent"
        docker rm -f "$cluster-agent-bin" >/dev/null
        docker cp "$work/ballast-agent" "$n:/usr/bin/ballast-agent"
        docker cp "$top/nodeagent/ballast-agent.service" "$n:/etc/systemd/system/ballast-agent.service"
        node_exec mkdir -p /etc/ballast-agent
        kubectl -n "$opns" get configmap -l app.kubernetes.io/component=agent \
                -o jsonpath='{.items[0].data.config\.yaml}' | node_write /etc/ballast-agent/config.yaml
        local server
        server="https://$cluster-control-plane:6443"
        node_write /etc/ballast-agent/kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: kind, cluster: {server: "$server", certificate-authority-data: "$(base64 -w0 <"$work/ca.crt")"}}]
users: [{name: agent, user: {token: "$(kubectl -n "$opns" create token "$(sa_of agent)" --duration=2h)"}}]
contexts: [{name: agent, context: {cluster: kind, user: agent}}]
current-context: agent
KUBECONFIG
        node_write /etc/default/ballast-agent <<ENV
NODE_NAME=$n
BALLAST_NAMESPACE=$opns
BALLAST_OBJECT_STORE=s3://ballast/kind?endpoint=http://$s3:7070&region=us-east-1&path_style=true
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
BALLAST_AGENT_ARGS=--kubeconfig=/etc/ballast-agent/kubeconfig --poll-interval=2s
ENV
        # /etc/ballast on tmpfs, as docs/agent.md puts it: a reboot wipes it.
        node_write /etc/systemd/system/etc-ballast.mount <<'UNIT'
[Unit]
Description=The Ballast root on tmpfs (kind-e2e: a reboot wipes it)
Before=ballast-agent.service
[Mount]
What=tmpfs
Where=/etc/ballast
Type=tmpfs
Options=mode=0755,size=16m
[Install]
WantedBy=local-fs.target ballast-agent.service
UNIT
        node_exec systemctl daemon-reload
        node_exec systemctl enable --now etc-ballast.mount ballast-agent.service >/dev/null 2>&1 ||
                { node_exec journalctl -u ballast-agent --no-pager -n 30 >&2; fail "the host service did not start on $n"; }
        wait_until 60 "the host service on $n is ready" host_agent_ready
        wait_until 30 "motd restored on $n's fresh tmpfs from the cache" host_file_is motd/motd "managed by ballast"
        apply_host_bundle "one"
        wait_until 60 "hostsvc 'one' on $n" host_file_is hostsvc/note "one"

        step "the API server goes down; $n's container restarts (a reboot: /etc/ballast is empty again)"
        e2e_api_pause
        docker restart -t 20 "$n" >/dev/null
        wait_until 120 "the host service on $n is ready again" host_agent_ready
        host_file_is hostsvc/note "one" || fail "the host service did not restore hostsvc/note from its cache"
        host_file_is motd/motd "managed by ballast" || fail "the host service did not restore motd from its cache"
        [[ $(node_exec findmnt -n -o FSTYPE /etc/ballast) == tmpfs ]] || fail "/etc/ballast on $n is not the fresh tmpfs"
        no_pods_running || fail "pods run on $n although the API server is down"
        step "files restored from the cache, no pod running on $n"

        step "the API server comes back for everyone but $n (partitioned): updates still reach it from the object store"
        partition_rule -I "$n"
        e2e_api_resume
        wait_until 60 "the API server answers again" kubectl get --raw /readyz
        apply_host_bundle "two"
        wait_until 60 "hostsvc 'two' on $n through the object store" host_file_is hostsvc/note "two"
        no_pods_running || fail "pods run on $n although it cannot reach the API server"
        partition_rule -D "$n"
        wait_until 180 "every node Ready again" all_nodes_ready
}
