#!/bin/sh
# The CNI stand-in for kindnetd (whose module the Go proxy does not serve):
# on its own node, a ptp + host-local CNI configuration for the node's
# spec.podCIDR; towards every other node, a route to that node's pod CIDR via
# its InternalIP. Runs as a DaemonSet (default-cni.yaml, host network), so a
# node whose container restarts gets both back as soon as the pod runs again.
# Reads nodes from the API server that kind names in CONTROL_PLANE_ENDPOINT.
set -u
sa=/var/run/secrets/kubernetes.io/serviceaccount
server="https://${CONTROL_PLANE_ENDPOINT:-$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT}"
conf=/host/etc/cni/net.d/10-ballast-e2e.conflist

nodes() {
        kubectl --server="$server" --certificate-authority="$sa/ca.crt" --token="$(cat "$sa/token")" \
                get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'
}

write_conf() { # CIDR
        cat >"$conf.tmp" <<JSON
{"cniVersion":"1.0.0","name":"ballast-e2e","plugins":[
 {"type":"ptp","ipMasq":true,"mtu":1500,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$1"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
        if ! cmp -s "$conf.tmp" "$conf"; then
                mv "$conf.tmp" "$conf"
                echo "cni-standin: wrote $conf for $1"
        else
                rm -f "$conf.tmp"
        fi
}

while :; do
        if list=$(nodes); then
                echo "$list" | while read -r name cidr ip; do
                        if [ -z "$cidr" ] || [ -z "$ip" ]; then
                                continue
                        elif [ "$name" = "$NODE_NAME" ]; then
                                write_conf "$cidr"
                                continue
                        fi
                        case $(ip route show "$cidr") in
                        "$cidr via $ip "*) ;;
                        *) ip route replace "$cidr" via "$ip" && echo "cni-standin: route $cidr via $ip ($name)" ;;
                        esac
                done
        else
                echo "cni-standin: cannot list nodes from $server; retrying" >&2
        fi
        sleep 10
done
