# shellcheck shell=bash disable=SC2034 # the variables here are used by the scripts that source this
# Shared helpers for the scripts in scripts/k8s/. Sourced, never run.
#
# Layout on disk (all outside the checkout, so `git clean` never loses a 7-minute build):
#   ~/.cache/ironedge/k8s-1.20.2/bin/   kube-apiserver, kube-controller-manager, kubectl, BUILD-INFO
#   ~/.cache/ironedge/k8s-1.20.2/work/  the source build while it runs (deleted on success)
#   ~/.cache/ironedge/cluster/<name>/   one control plane: pids, logs, certs, etcd data, kubeconfig

K8S_VERSION=1.20.2
# reflect2 1.0.1 (vendored by Kubernetes 1.20) crashes the apiserver with SIGSEGV on every
# custom-resource write under Go >= 1.18; the build swaps in this version. BUILD-INFO records it so
# binaries built without the fix are never mistaken for good ones.
K8S_REFLECT2_VERSION=1.0.2

IRONEDGE_CACHE="${IRONEDGE_CACHE:-$HOME/.cache/ironedge}"
K8S_HOME="$IRONEDGE_CACHE/k8s-$K8S_VERSION"
K8S_BIN="$K8S_HOME/bin"
K8S_CLUSTERS="$IRONEDGE_CACHE/cluster"

# Debian packages: what running a control plane needs, and what building one additionally needs.
K8S_RUNTIME_PACKAGES=(etcd-server jq openssl)
K8S_BUILD_PACKAGES=(golang-go rsync make golang-github-modern-go-reflect2-dev)

# The three processes of a control plane, in start order (stop goes in reverse).
K8S_COMPONENTS=(etcd kube-apiserver kube-controller-manager)

# Print the calling script's header comment (everything after the shebang up to the first
# non-comment line) as its --help.
k8s_usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

k8s_log() { printf '[k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# die MESSAGE [HINT]: a failure the user can act on; HINT says what to do.
k8s_die() {
    printf '[k8s] ERROR: %s\n' "$1" >&2
    if [[ $# -gt 1 ]]; then printf '[k8s]   what to do: %s\n' "$2" >&2; fi
    exit 1
}

# Path of the binary a component runs (etcd comes from Debian, the rest from our build).
k8s_component_binary() {
    case "$1" in
    etcd) command -v etcd || echo /usr/bin/etcd ;;
    *) echo "$K8S_BIN/$1" ;;
    esac
}

# Packages from the given list that dpkg does not report as installed.
k8s_missing_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    echo "${missing[@]}"
}

# True when the cached server binaries exist and were built with the reflect2 fix.
k8s_servers_built() {
    [[ -x "$K8S_BIN/kube-apiserver" && -x "$K8S_BIN/kube-controller-manager" ]] &&
        grep -qx "reflect2=$K8S_REFLECT2_VERSION" "$K8S_BIN/BUILD-INFO" 2>/dev/null
}

# Resolve the state dir of one control plane. Flags beat the environment, and a directory beats a
# name: --state-dir, --name, IRONEDGE_K8S_STATE_DIR, IRONEDGE_K8S_NAME, else the name "dev".
# Sets K8S_STATE and K8S_NAME.
k8s_resolve_state_dir() {
    local flag_dir="$1" flag_name="$2"
    if [[ -n "$flag_dir" ]]; then
        K8S_STATE="$flag_dir"
    elif [[ -n "$flag_name" ]]; then
        K8S_NAME="$flag_name"
        K8S_STATE=""
    elif [[ -n "${IRONEDGE_K8S_STATE_DIR:-}" ]]; then
        K8S_STATE="$IRONEDGE_K8S_STATE_DIR"
    else
        K8S_NAME="${IRONEDGE_K8S_NAME:-dev}"
        K8S_STATE=""
    fi
    if [[ -z "$K8S_STATE" ]]; then
        [[ "$K8S_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
            k8s_die "invalid cluster name '$K8S_NAME'" "use letters, digits, '.', '_' or '-'"
        K8S_STATE="$K8S_CLUSTERS/$K8S_NAME"
    fi
    # Absolute, because the daemons and the kubeconfig outlive the caller's working directory.
    [[ "$K8S_STATE" = /* ]] || K8S_STATE="$PWD/$K8S_STATE"
    K8S_NAME="$(basename "$K8S_STATE")"
}

# The pid recorded for a component if that process is still alive AND still runs the component's
# binary (pids get reused; never signal a stranger). Prints nothing otherwise.
k8s_live_pid() {
    local component="$1" pid exe want
    [[ -f "$K8S_STATE/$component.pid" ]] || return 0
    pid="$(<"$K8S_STATE/$component.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 0
    want="$(readlink -f "$(k8s_component_binary "$component")")"
    # A binary replaced by a rebuild shows as "<path> (deleted)" but is still ours.
    if [[ "$exe" == "$want" || "$exe" == "$want (deleted)" ]]; then
        echo "$pid"
    fi
}

# Last lines of a component's log, indented, for error messages.
k8s_log_tail() {
    local log="$K8S_STATE/$1.log"
    if [[ -f "$log" ]]; then
        echo "--- last 25 lines of $log:" >&2
        tail -n 25 "$log" | sed 's/^/    /' >&2
    fi
}

# Take the per-control-plane lock (fd 8) so starts and stops of one control plane run one at a time.
k8s_lock_state() {
    local lock="$K8S_STATE/.lock" c pid
    exec 8>"$lock"
    flock -n 8 && return 0
    # Servers launched by the first version of start inherited this lock and hold it for life;
    # waiting for them would hang forever, and they are ours, so go ahead.
    for c in "${K8S_COMPONENTS[@]}"; do
        pid="$(k8s_live_pid "$c")"
        if [[ -n "$pid" ]] && [[ "$(readlink "/proc/$pid/fd/8" 2>/dev/null)" == "$lock" ]]; then
            k8s_log "note: $c (pid $pid) holds the state lock (started by an older start); proceeding"
            return 0
        fi
    done
    k8s_log "waiting for another start/stop of '$K8S_NAME' (lock: $lock)"
    flock -w 180 8 || k8s_die "another start/stop of '$K8S_NAME' has held $lock for 3 minutes" \
        "wait for it to finish, or find it with: ps -ef | grep scripts/k8s"
}
