//! The nftables ruleset inside each pod's network namespace: Service ClusterIP ports are
//! DNAT-ed to their backends (randomly spread like kube-proxy), ports without backends are
//! refused, and any destination outside loopback and the pod network is rejected, so nothing a
//! pod sends ever leaves the machine.

use std::fmt::Write as _;

use crate::cidr::Ipv4Cidr;
use crate::service_table::ServiceTable;

/// The table's name, in the `ip` family of the pod's namespace.
pub const TABLE: &str = "ironedge";

/// The complete ruleset; applying it replaces the previous one in one transaction.
pub fn render_ruleset(services: &ServiceTable, pod_network: Ipv4Cidr) -> String {
    let mut nat = String::new();
    let mut refuse = String::new();
    for svc in services.entries() {
        let Some(ip) = svc.cluster_ip else { continue };
        for rule in &svc.ports {
            let proto = rule.protocol.nft();
            let matcher = format!("ip daddr {ip} {proto} dport {}", rule.port);
            match rule.backends.as_slice() {
                [] => {
                    let _ = writeln!(refuse, "    {matcher} reject");
                }
                [(addr, port)] => {
                    let _ = writeln!(nat, "    {matcher} dnat to {addr}:{port}");
                }
                many => {
                    let map = many
                        .iter()
                        .enumerate()
                        .map(|(i, (a, p))| format!("{i} : {a} . {p}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(
                        nat,
                        "    {matcher} dnat ip to numgen random mod {} map {{ {map} }}",
                        many.len()
                    );
                }
            }
        }
    }
    format!(
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain output_nat {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}\n  chain output_filter {{\n    type filter hook output priority 0; policy accept;\n    oifname \"lo\" accept\n{refuse}    ip daddr {pod_network} accept\n    meta l4proto tcp reject with tcp reset\n    reject with icmp type admin-prohibited\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mk_endpoints, mk_service};

    #[test]
    fn services_become_dnat_rules_and_everything_else_stays_inside() {
        let t = ServiceTable::build(
            &[
                mk_service("a", "one", "10.0.0.5", &[("p", 8883)]),
                mk_service("a", "two", "10.0.0.6", &[("p", 80)]),
                mk_service("a", "none", "10.0.0.7", &[("p", 81)]),
            ],
            &[
                mk_endpoints("a", "one", &["10.88.0.3"], &[("p", 8883)]),
                mk_endpoints("a", "two", &["10.88.0.3", "10.88.0.4"], &[("p", 8080)]),
            ],
            None,
        );
        let rules = render_ruleset(&t, "10.88.0.0/24".parse().unwrap());
        assert!(
            rules.contains("ip daddr 10.0.0.5 tcp dport 8883 dnat to 10.88.0.3:8883\n"),
            "{rules}"
        );
        assert!(rules.contains(
            "ip daddr 10.0.0.6 tcp dport 80 dnat ip to numgen random mod 2 map { 0 : 10.88.0.3 . 8080, 1 : 10.88.0.4 . 8080 }"
        ), "{rules}");
        assert!(
            rules.contains("ip daddr 10.0.0.7 tcp dport 81 reject\n"),
            "{rules}"
        );
        assert!(rules.contains("ip daddr 10.88.0.0/24 accept\n"));
        assert!(rules.starts_with("table ip ironedge {}\ndelete table ip ironedge\n"));
    }
}
