//! Pod networking: one bridge per node carrying the node's pod network (a /24, the first address
//! is the bridge), and per pod a network namespace with a veth pair into the bridge, the pod IP, a
//! default route via the bridge and the nftables rules of [`crate::nft`]. Pod-to-pod traffic is
//! plain layer 2 on the bridge; nothing is routed or forwarded by the host (`ip_forward` stays as
//! it is) and nothing leaves the machine.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cidr::Ipv4Cidr;
use crate::command::{run, run_quietly};
use crate::error::{Error, Result};
use crate::names::HostNames;

const IP: &str = "ip";
const NFT: &str = "nft";

/// Where `ip netns` keeps named namespaces.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The node's bridge and pod network.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    /// Host names of this node.
    pub names: HostNames,
    /// The pod network.
    pub cidr: Ipv4Cidr,
    /// Locked while the node runs: its namespaces and bridge are in use, not leftovers.
    _alive: std::sync::Arc<std::fs::File>,
}

impl NodeNetwork {
    /// Creates the bridge for `cidr`, or for the first free /24 of 10.88.0.0/16 when `None`.
    /// Leftovers of an earlier run of the same node are removed first.
    pub async fn create(names: HostNames, cidr: Option<Ipv4Cidr>, lock_dir: &Path) -> Result<Self> {
        let nodes_dir = lock_dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir).map_err(Error::io(&nodes_dir))?;
        let alive_path = nodes_dir.join(format!("{}.lock", names.node_hash()));
        let alive = std::fs::File::create(&alive_path).map_err(Error::io(&alive_path))?;
        if alive.try_lock().is_err() {
            return Err(Error::Invalid {
                what: "node name",
                value: names.node_hash().to_string(),
                reason: "another ironedge node with this name runs on this machine".into(),
            });
        }
        remove_leftovers(&names).await;
        collect_garbage(&nodes_dir).await;
        let lock_path = lock_dir.join("pod-networks.lock");
        let lock = std::fs::File::create(&lock_path).map_err(Error::io(&lock_path))?;
        // Choosing a free network and claiming it (by giving the bridge its address) must not
        // interleave with another node doing the same.
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| Error::Command {
                command: "flock".into(),
                reason: e.to_string(),
            })?
            .map_err(Error::io(&lock_path))?;
        let cidr = match cidr {
            Some(c) => c,
            None => free_network(&addresses_in_use().await?)?,
        };
        let bridge = names.bridge();
        let gateway = format!("{}/{}", cidr.gateway(), cidr.prefix());
        run(IP, &["link", "add", &bridge, "type", "bridge"], None).await?;
        let configured = async {
            run(IP, &["addr", "add", &gateway, "dev", &bridge], None).await?;
            run(IP, &["link", "set", &bridge, "up"], None).await
        }
        .await;
        drop(lock);
        if let Err(e) = configured {
            run_quietly(IP, &["link", "del", &bridge]).await;
            return Err(e);
        }
        tracing::info!(%bridge, pod_network = %cidr, "pod network ready");
        Ok(Self {
            names,
            cidr,
            _alive: std::sync::Arc::new(alive),
        })
    }

    /// The bridge address, which pods use as gateway and to reach the node's proxies.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    /// Creates the network namespace of a pod with address `ip` and applies `ruleset`.
    pub async fn create_pod(&self, pod_uid: &str, ip: Ipv4Addr, ruleset: &str) -> Result<String> {
        let netns = self.names.netns(pod_uid);
        let veth = self.names.veth(pod_uid);
        run_quietly(IP, &["netns", "del", &netns]).await;
        run(IP, &["netns", "add", &netns], None).await?;
        let result = async {
            let addr = format!("{ip}/{}", self.cidr.prefix());
            let gw = self.gateway().to_string();
            let bridge = self.names.bridge();
            run(
                IP,
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
                ],
                None,
            )
            .await?;
            run(IP, &["link", "set", &veth, "master", &bridge, "up"], None).await?;
            run(IP, &["-n", &netns, "link", "set", "lo", "up"], None).await?;
            run(
                IP,
                &["-n", &netns, "addr", "add", &addr, "dev", "eth0"],
                None,
            )
            .await?;
            run(IP, &["-n", &netns, "link", "set", "eth0", "up"], None).await?;
            run(
                IP,
                &["-n", &netns, "route", "add", "default", "via", &gw],
                None,
            )
            .await?;
            apply_rules(&netns, ruleset).await
        }
        .await;
        if let Err(e) = result {
            self.delete_pod(pod_uid).await;
            return Err(e);
        }
        Ok(netns)
    }

    /// Removes a pod's namespace (and with it its veth pair).
    pub async fn delete_pod(&self, pod_uid: &str) {
        run_quietly(IP, &["link", "del", &self.names.veth(pod_uid)]).await;
        run_quietly(IP, &["netns", "del", &self.names.netns(pod_uid)]).await;
    }

    /// Removes the bridge and every namespace of this node.
    pub async fn destroy(&self) {
        remove_leftovers(&self.names).await;
    }
}

/// Replaces the nftables ruleset inside `netns`.
pub async fn apply_rules(netns: &str, ruleset: &str) -> Result<()> {
    run(IP, &["netns", "exec", netns, NFT, "-f", "-"], Some(ruleset))
        .await
        .map(|_| ())
}

/// Deletes every namespace with this node's prefix and the node's bridge.
async fn remove_leftovers(names: &HostNames) {
    let prefix = names.netns_prefix();
    if let Ok(list) = run(IP, &["netns", "list"], None).await {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&prefix) {
                tracing::info!(
                    netns = ns,
                    "removing leftover network namespace and its processes"
                );
                kill_processes_in(ns).await;
                run_quietly(IP, &["netns", "del", ns]).await;
            }
        }
    }
    run_quietly(IP, &["link", "del", &names.bridge()]).await;
}

/// Removes the namespaces and bridges of nodes that are not running any more (crashed or
/// killed): their lock in `nodes_dir` is free.
async fn collect_garbage(nodes_dir: &Path) {
    let mut hashes = BTreeSet::new();
    if let Ok(list) = run(IP, &["netns", "list"], None).await {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            hashes.extend(HostNames::hash_in(ns).map(str::to_string));
        }
    }
    if let Ok(links) = std::fs::read_dir("/sys/class/net") {
        for link in links.flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            hashes.extend(HostNames::hash_in(&name).map(str::to_string));
        }
    }
    for hash in hashes {
        let path = nodes_dir.join(format!("{hash}.lock"));
        let Ok(lock) = std::fs::File::create(&path) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            tracing::info!(node_hash = %hash, "removing the network of a node that is gone");
            remove_leftovers(&HostNames::from_hash(&hash)).await;
        }
    }
}

/// SIGKILLs every process in a network namespace (left by a node that crashed).
async fn kill_processes_in(netns: &str) {
    let Ok(pids) = run(IP, &["netns", "pids", netns], None).await else {
        return;
    };
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Networks of every IPv4 address configured on the host.
async fn addresses_in_use() -> Result<Vec<Ipv4Cidr>> {
    let out = run(IP, &["-4", "-o", "addr", "show"], None).await?;
    Ok(parse_addresses(&out))
}

/// The networks in `ip -4 -o addr show` output.
pub fn parse_addresses(out: &str) -> Vec<Ipv4Cidr> {
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.parse().ok()
        })
        .collect()
}

/// The first 10.88.N.0/24 overlapping none of `used`.
pub fn free_network(used: &[Ipv4Cidr]) -> Result<Ipv4Cidr> {
    (0..=255u8)
        .filter_map(|n| Ipv4Cidr::new(Ipv4Addr::new(10, 88, n, 0), 24))
        .find(|c| {
            used.iter()
                .all(|u| !u.contains(c.network()) && !c.contains(u.network()))
        })
        .ok_or_else(|| Error::NoFreeNetwork {
            range: "10.88.0.0/16".into(),
        })
}

/// Pod addresses handed out by this node.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    cidr: Ipv4Cidr,
    used: BTreeSet<Ipv4Addr>,
}

impl IpAllocator {
    /// An allocator over `cidr`'s pod addresses.
    pub fn new(cidr: Ipv4Cidr) -> Self {
        Self {
            cidr,
            used: BTreeSet::new(),
        }
    }

    /// The lowest free address.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let ip = self.cidr.pod_addresses().find(|a| !self.used.contains(a))?;
        self.used.insert(ip);
        Some(ip)
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_network_skips_networks_in_use() {
        let used = parse_addresses(
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
             5: iebr1    inet 10.88.0.1/24 brd 10.88.0.255 scope global iebr1\n\
             6: iebr2    inet 10.88.1.1/24 scope global iebr2\n",
        );
        assert_eq!(used.len(), 3);
        assert_eq!(free_network(&used).unwrap().to_string(), "10.88.2.0/24");
        let wide = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(free_network(&wide).is_err());
    }

    #[test]
    fn allocator_reuses_released_addresses() {
        let mut a = IpAllocator::new("10.88.0.0/24".parse().unwrap());
        let first = a.allocate().unwrap();
        let second = a.allocate().unwrap();
        assert_eq!(
            (first.to_string(), second.to_string()),
            ("10.88.0.2".into(), "10.88.0.3".into())
        );
        a.release(first);
        assert_eq!(a.allocate(), Some(first));
    }
}
