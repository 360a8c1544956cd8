//! A pod's `/etc/hosts` and `/etc/resolv.conf`. There is no cluster DNS server: every Service name
//! form a pod may use (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<domain>`) is written into the
//! pod's hosts file, which the node rewrites in place when Services change (resolvers read the file
//! on every lookup). The resolver points at the pod's own loopback, where nothing listens, so
//! other names fail at once instead of timing out.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::HostAlias;

use crate::service_table::ServiceTable;

/// What a pod's hosts file is made from.
#[derive(Debug, Clone)]
pub struct HostsInputs<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's host name (`spec.hostname` or its name).
    pub hostname: &'a str,
    /// `spec.subdomain`.
    pub subdomain: Option<&'a str>,
    /// The pod's address.
    pub pod_ip: Option<Ipv4Addr>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: &'a str,
    /// `spec.hostAliases`.
    pub host_aliases: &'a [HostAlias],
    /// Extra `name → address` entries every pod gets (host aliases of the node).
    pub node_aliases: &'a [(String, Ipv4Addr)],
}

/// The hosts file.
pub fn render_hosts(inputs: &HostsInputs<'_>, services: &ServiceTable) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (ironedge node).\n");
    out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let domain = inputs.cluster_domain;
    if let Some(ip) = inputs.pod_ip {
        match inputs.subdomain {
            Some(sub) if !sub.is_empty() => {
                let _ = writeln!(
                    out,
                    "{ip}\t{h}.{sub}.{ns}.svc.{domain}\t{h}",
                    h = inputs.hostname,
                    ns = inputs.namespace
                );
            }
            _ => {
                let _ = writeln!(out, "{ip}\t{}", inputs.hostname);
            }
        }
    }
    for svc in services.entries() {
        let names = service_names(&svc.name, &svc.namespace, inputs.namespace, domain);
        match svc.cluster_ip {
            Some(ip) => {
                let _ = writeln!(out, "{ip}\t{names}");
            }
            None => {
                for ip in &svc.addresses {
                    let _ = writeln!(out, "{ip}\t{names}");
                }
            }
        }
    }
    for (name, ip) in inputs.node_aliases {
        let _ = writeln!(out, "{ip}\t{name}");
    }
    if !inputs.host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in inputs.host_aliases {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            let _ = writeln!(out, "{}\t{names}", alias.ip);
        }
    }
    out
}

fn service_names(name: &str, svc_ns: &str, pod_ns: &str, domain: &str) -> String {
    let mut names = vec![
        format!("{name}.{svc_ns}.svc.{domain}"),
        format!("{name}.{svc_ns}.svc"),
        format!("{name}.{svc_ns}"),
    ];
    if svc_ns == pod_ns {
        names.push(name.to_string());
    }
    names.join("\t")
}

/// The resolv.conf: kubelet's search path, and no reachable name server.
pub fn render_resolv_conf(namespace: &str, cluster_domain: &str) -> String {
    format!(
        "# ironedge node: Service names resolve through /etc/hosts; there is no cluster DNS.\nsearch {namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}\nnameserver 127.0.0.1\noptions ndots:5 attempts:1 timeout:1\n"
    )
}

/// `new` padded with a trailing comment so that it is at least `old_len` bytes long: a hosts file
/// bind-mounted into pods is rewritten in place (a rename would not reach the mounts), and never
/// shrinking it means a reader can never see a truncated file.
pub fn pad_to(new: &str, old_len: usize) -> String {
    if new.len() >= old_len {
        return new.to_string();
    }
    let mut out = new.to_string();
    out.push('#');
    while out.len() < old_len.saturating_sub(1) {
        out.push(' ');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mk_endpoints, mk_service};

    fn inputs<'a>(aliases: &'a [HostAlias], node: &'a [(String, Ipv4Addr)]) -> HostsInputs<'a> {
        HostsInputs {
            namespace: "dev1",
            hostname: "agent-7c9",
            subdomain: None,
            pod_ip: Some(Ipv4Addr::new(10, 88, 0, 2)),
            cluster_domain: "cluster.local",
            host_aliases: aliases,
            node_aliases: node,
        }
    }

    #[test]
    fn every_service_name_form_resolves_and_short_names_only_in_the_own_namespace() {
        let t = ServiceTable::build(
            &[
                mk_service("dev1", "edgehub", "10.0.0.7", &[("mqtt", 8883)]),
                mk_service("dev2", "edgehub", "10.0.0.9", &[("mqtt", 8883)]),
            ],
            &[],
            None,
        );
        let hosts = render_hosts(&inputs(&[], &[]), &t);
        assert!(hosts.contains("10.0.0.7\tedgehub.dev1.svc.cluster.local\tedgehub.dev1.svc\tedgehub.dev1\tedgehub\n"), "{hosts}");
        assert!(
            hosts.contains(
                "10.0.0.9\tedgehub.dev2.svc.cluster.local\tedgehub.dev2.svc\tedgehub.dev2\n"
            ),
            "{hosts}"
        );
        assert!(hosts.contains("10.88.0.2\tagent-7c9\n"));
    }

    #[test]
    fn headless_services_and_aliases_are_listed() {
        let t = ServiceTable::build(
            &[mk_service("dev1", "db", "None", &[("p", 5432)])],
            &[mk_endpoints("dev1", "db", &["10.88.0.5"], &[("p", 5432)])],
            None,
        );
        let alias = HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(vec!["a".into(), "b".into()]),
        };
        let node = [(
            "host.ironedge.internal".to_string(),
            Ipv4Addr::new(10, 88, 0, 1),
        )];
        let hosts = render_hosts(&inputs(std::slice::from_ref(&alias), &node), &t);
        assert!(hosts.contains("10.88.0.5\tdb.dev1.svc.cluster.local"));
        assert!(hosts.contains("10.1.2.3\ta\tb\n"));
        assert!(hosts.contains("10.88.0.1\thost.ironedge.internal\n"));
    }

    #[test]
    fn padding_never_shrinks_the_file() {
        assert_eq!(pad_to("abc\n", 2), "abc\n");
        let padded = pad_to("a\n", 20);
        assert_eq!(padded.len(), 20);
        assert!(padded.starts_with("a\n#") && padded.ends_with('\n'));
    }

    #[test]
    fn resolv_conf_has_the_kubelet_search_path() {
        let r = render_resolv_conf("dev1", "cluster.local");
        assert!(r.contains("search dev1.svc.cluster.local svc.cluster.local cluster.local\n"));
    }
}
