# shellcheck shell=bash
# free_port VAR: sets VAR to a port on 127.0.0.1 that nobody listens on and
# this shell has not handed out yet, below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range), so that no outgoing connection of any
# process can take it before the server it is meant for binds it. (Port 0,
# or a port from inside the range, can be taken in between: a daemon that
# then can't bind its health port fails a test for nothing.)
free_port() {
        local p i lo=10000 hi=32768 eph
        read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph=32768
        ((eph > lo + 1000)) && hi=$eph
        for ((i = 0; i < 500; i++)); do
                p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
                [[ " ${taken_ports:-} " == *" $p "* ]] && continue
                (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
                [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
                taken_ports="${taken_ports:-} $p"
                printf -v "$1" '%s' "$p"
                return 0
        done
        echo "no free port in $lo..$((hi - 1))" >&2
        return 1
}
