//! The Services a pod can reach: ClusterIP ports with their ready backends (from Endpoints, which
//! kube-controller-manager fills from the pod IPs and Ready conditions this node writes) and
//! headless Services' pod addresses. Pure: built from watched objects, rendered into each pod's
//! `/etc/hosts` ([`crate::hosts`]) and DNAT rules ([`crate::nft`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn from_spec(p: Option<&str>) -> Option<Self> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    /// The nftables name.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One Service port and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRule {
    /// Protocol.
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// Ready backends (address, port); empty means connections are refused.
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// One Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The ClusterIP; `None` for headless Services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Port rules (ClusterIP Services only).
    pub ports: Vec<PortRule>,
    /// Ready pod addresses (headless Services resolve to these).
    pub addresses: Vec<Ipv4Addr>,
}

/// Every Service the node knows, keyed by (namespace, name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTable {
    entries: BTreeMap<(String, String), ServiceEntry>,
}

/// Where the `kubernetes` Service of `default` leads: the node's API server proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiServerRoute {
    /// The proxy's address (the pod network's gateway).
    pub address: Ipv4Addr,
    /// The proxy's port.
    pub port: u16,
}

impl ServiceTable {
    /// Builds the table from watched Services and Endpoints.
    pub fn build(
        services: &[Service],
        endpoints: &[Endpoints],
        api: Option<ApiServerRoute>,
    ) -> Self {
        let by_key: BTreeMap<(String, String), &Endpoints> = endpoints
            .iter()
            .map(|e| (key(&e.metadata.namespace, &e.metadata.name), e))
            .collect();
        let mut entries = BTreeMap::new();
        for svc in services {
            let k = key(&svc.metadata.namespace, &svc.metadata.name);
            let is_master = k.0 == "default" && k.1 == "kubernetes";
            let entry = entry(svc, by_key.get(&k).copied(), api.filter(|_| is_master));
            if let Some(entry) = entry {
                entries.insert(k, entry);
            }
        }
        Self { entries }
    }

    /// All entries, ordered by namespace and name.
    pub fn entries(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.entries.values()
    }

    /// The ClusterIP of `namespace/name`.
    pub fn cluster_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.entries
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|e| e.cluster_ip)
    }
}

fn key(ns: &Option<String>, name: &Option<String>) -> (String, String) {
    (
        ns.clone().unwrap_or_default(),
        name.clone().unwrap_or_default(),
    )
}

fn entry(
    svc: &Service,
    eps: Option<&Endpoints>,
    api: Option<ApiServerRoute>,
) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => None,
        Some(ip) => Some(ip.parse::<Ipv4Addr>().ok()?),
    };
    let subsets = eps.and_then(|e| e.subsets.as_deref()).unwrap_or_default();
    let mut addresses: Vec<Ipv4Addr> = subsets
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.ip.parse().ok())
        .collect();
    addresses.sort();
    addresses.dedup();
    let mut ports = Vec::new();
    if cluster_ip.is_some() {
        for sp in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_spec(sp.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(sp.port) else {
                continue;
            };
            let backends = match api {
                Some(route) => vec![(route.address, route.port)],
                None => backends(
                    subsets,
                    sp.name.as_deref(),
                    protocol,
                    sp.target_port.as_ref(),
                ),
            };
            ports.push(PortRule {
                protocol,
                port,
                backends,
            });
        }
    }
    Some(ServiceEntry {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        cluster_ip,
        ports,
        addresses,
    })
}

/// The ready (address, port) pairs of one Service port: Endpoints ports are matched by the
/// Service port's name (unnamed when the Service has one port), as kube-proxy does.
fn backends(
    subsets: &[k8s_openapi::api::core::v1::EndpointSubset],
    port_name: Option<&str>,
    protocol: Protocol,
    target: Option<&IntOrString>,
) -> Vec<(Ipv4Addr, u16)> {
    let mut out = Vec::new();
    for subset in subsets {
        let port = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name.unwrap_or("")
                && Protocol::from_spec(p.protocol.as_deref()) == Some(protocol)
        });
        let port = port.map(|p| p.port).or(match target {
            Some(IntOrString::Int(p)) if subset.ports.is_none() => Some(*p),
            _ => None,
        });
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse() {
                out.push((ip, port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mk_endpoints, mk_service};

    #[test]
    fn cluster_ip_ports_lead_to_ready_endpoints_by_port_name() {
        let svc = mk_service(
            "ns1",
            "edgehub",
            "10.0.0.7",
            &[("mqtt", 8883), ("amqp", 5671)],
        );
        let eps = mk_endpoints(
            "ns1",
            "edgehub",
            &["10.88.0.3"],
            &[("mqtt", 18883), ("amqp", 15671)],
        );
        let t = ServiceTable::build(&[svc], &[eps], None);
        let e = t.entries().next().unwrap();
        assert_eq!(e.cluster_ip, Some(Ipv4Addr::new(10, 0, 0, 7)));
        let mqtt = e.ports.iter().find(|p| p.port == 8883).unwrap();
        assert_eq!(mqtt.backends, vec![(Ipv4Addr::new(10, 88, 0, 3), 18883)]);
        assert_eq!(
            t.cluster_ip("ns1", "edgehub"),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
    }

    #[test]
    fn services_without_endpoints_have_no_backends() {
        let svc = mk_service("ns1", "a", "10.0.0.8", &[("p", 80)]);
        let t = ServiceTable::build(&[svc], &[], None);
        assert!(t.entries().next().unwrap().ports[0].backends.is_empty());
    }

    #[test]
    fn the_master_service_leads_to_the_api_proxy() {
        let svc = mk_service("default", "kubernetes", "10.0.0.1", &[("https", 443)]);
        let route = ApiServerRoute {
            address: Ipv4Addr::new(10, 88, 0, 1),
            port: 40000,
        };
        let t = ServiceTable::build(&[svc], &[], Some(route));
        assert_eq!(
            t.entries().next().unwrap().ports[0].backends,
            vec![(route.address, 40000)]
        );
    }

    #[test]
    fn headless_services_list_pod_addresses() {
        let svc = mk_service("ns1", "h", "None", &[("p", 80)]);
        let eps = mk_endpoints("ns1", "h", &["10.88.0.4", "10.88.0.3"], &[("p", 80)]);
        let t = ServiceTable::build(&[svc], &[eps], None);
        let e = t.entries().next().unwrap();
        assert_eq!(e.cluster_ip, None);
        assert_eq!(
            e.addresses,
            vec![Ipv4Addr::new(10, 88, 0, 3), Ipv4Addr::new(10, 88, 0, 4)]
        );
    }
}
