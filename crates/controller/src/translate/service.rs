//! Ports → a Service named after the module.
//!
//! `ExposedPorts` publish the container port under the same number; `PortBindings` publish it under
//! the host port and replace the exposed entry of that container port (`reference/azure-iotedge-k8s.md`
//! §3.2). The type is `k8s-experimental.serviceOptions.type`, else `spec.portBindingServiceType`
//! for modules with bindings, else `ClusterIP`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::create_options::{CreateOptions, Port};
use super::meta::Context;
use crate::crd::{ModuleSpec, ServiceType};
use crate::error::SpecError;

/// The module's Service, or `None` when it has no ports.
pub fn service(
    ctx: &Context<'_>,
    name: &str,
    module: &ModuleSpec,
    options: &CreateOptions,
) -> Result<Option<Service>, SpecError> {
    let ports = service_ports(options);
    if ports.is_empty() {
        return Ok(None);
    }
    let service_options = options
        .experimental
        .service_options
        .clone()
        .unwrap_or_default();
    let type_ = service_options
        .type_
        .unwrap_or(if options.host.port_bindings.is_empty() {
            ServiceType::ClusterIP
        } else {
            ctx.ed.spec.port_binding_service_type.unwrap_or_default()
        });
    let mut annotations = ctx.module_annotations(module);
    annotations.extend(super::workload::valid_annotations(&options.labels));
    annotations.extend(service_options.annotations.clone());
    Ok(Some(Service {
        metadata: ctx.meta(name, ctx.module_labels(name), annotations, true),
        spec: Some(ServiceSpec {
            type_: Some(type_.as_str().to_string()),
            selector: Some(ctx.selector_labels(name)),
            ports: Some(ports),
            load_balancer_ip: service_options.load_balancer_ip.clone(),
            load_balancer_source_ranges: (!service_options.load_balancer_source_ranges.is_empty())
                .then(|| service_options.load_balancer_source_ranges.clone()),
            external_traffic_policy: service_options.external_traffic_policy.clone(),
            session_affinity: service_options.session_affinity.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

/// Service ports keyed by (published port, protocol), so that a port is published once.
fn service_ports(options: &CreateOptions) -> Vec<ServicePort> {
    let mut by_container: BTreeMap<Port, Vec<u16>> = BTreeMap::new();
    for port in &options.exposed_ports {
        by_container.insert(*port, vec![port.port]);
    }
    let mut bound: BTreeMap<Port, Vec<u16>> = BTreeMap::new();
    for binding in &options.host.port_bindings {
        bound
            .entry(binding.container)
            .or_default()
            .push(binding.host_port.unwrap_or(binding.container.port));
    }
    by_container.extend(bound);
    let mut published: BTreeMap<(u16, &'static str), ServicePort> = BTreeMap::new();
    for (container, ports) in by_container {
        for port in ports {
            let protocol = container.protocol.as_str();
            published
                .entry((port, protocol))
                .or_insert_with(|| ServicePort {
                    name: Some(format!("{}-{port}", protocol.to_ascii_lowercase())),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(container.port))),
                    protocol: Some(protocol.to_string()),
                    ..ServicePort::default()
                });
        }
    }
    published.into_values().collect()
}
