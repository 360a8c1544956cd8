use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::*;
use crate::crd::{ImagePullSecretRef, RestartPolicy};
use crate::fixtures::mk_module;
use crate::labels as keys;

fn samples() -> Vec<(String, EdgeDeployment)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let ed: EdgeDeployment =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_stem().unwrap().to_string_lossy().into_owned(), ed)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Golden files: every object and note for each sample under `tests/samples/`.
#[test]
fn samples_translate_to_the_reviewed_objects() {
    let samples = samples();
    assert!(samples.len() >= 5);
    for (name, ed) in samples {
        let desired = translate(&ed).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut text = desired.to_yaml();
        for module in &desired.modules {
            for note in &module.unsupported {
                text.push_str(&format!("# unsupported in {}: {note}\n", module.id));
            }
        }
        insta::assert_snapshot!(name, text);
    }
}

fn deployment(desired: &Desired, name: &str) -> Deployment {
    match &desired.module(name).unwrap().workload {
        Workload::Deployment(d) => (**d).clone(),
        Workload::Job(_) => panic!("{name} is a Job"),
    }
}

fn job(desired: &Desired, name: &str) -> Job {
    match &desired.module(name).unwrap().workload {
        Workload::Job(j) => (**j).clone(),
        Workload::Deployment(_) => panic!("{name} is a Deployment"),
    }
}

#[test]
fn translation_is_deterministic() {
    for (_, ed) in samples() {
        assert_eq!(
            translate(&ed).unwrap().to_yaml(),
            translate(&ed).unwrap().to_yaml()
        );
    }
}

#[test]
fn every_object_carries_the_standard_labels_and_an_owner_reference() {
    let ed = EdgeDeployment::test()
        .with_module("Filter_Module")
        .with_module("sensor");
    let desired = translate(&ed).unwrap();
    for object in desired.objects() {
        let value = serde_json::to_value(object).unwrap();
        let labels = &value["metadata"]["labels"];
        for key in [
            keys::INSTANCE,
            keys::MANAGED_BY,
            keys::PART_OF,
            keys::DEVICE,
            keys::NAME,
            keys::MODULE,
        ] {
            assert!(labels.get(key).is_some(), "{key} missing on {value}");
        }
        assert_eq!(labels[keys::MANAGED_BY], "ironedge-controller");
        let owner = &value["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "EdgeDeployment");
        assert_eq!(owner["controller"], true);
    }
    let filter = &desired.modules[0];
    assert_ne!(filter.name, filter.id.to_lowercase(), "a lossy name");
    assert_eq!(
        deployment(&desired, &filter.name)
            .metadata
            .annotations
            .unwrap()[keys::ORIGINAL_MODULE],
        "Filter_Module"
    );
}

#[test]
fn system_modules_get_no_objects_and_are_left_to_the_device_chart() {
    let ed = EdgeDeployment::test()
        .with_module("$edgeHub")
        .with_module("$edgeAgent")
        .with_module("sensor");
    let desired = translate(&ed).unwrap();
    let names: Vec<_> = desired.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(names, ["sensor"]);
    assert_eq!(desired.system_modules, ["$edgeHub", "$edgeAgent"]);
    for object in desired.objects() {
        let value = serde_json::to_value(object).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap();
        assert!(
            !name.contains("edgehub") && !name.contains("edgeagent"),
            "{name}"
        );
    }
    // A user module may be called like the edge hub's object: only an actual clash with the
    // chart's objects is refused (by the controller, which sees the cluster).
    let desired = translate(
        &EdgeDeployment::test()
            .with_module("$edgeHub")
            .with_module("edgeHub"),
    )
    .unwrap();
    assert_eq!(desired.modules[0].name, "edgehub");
}

#[test]
fn stopped_modules_keep_their_objects_with_zero_replicas() {
    let ed = EdgeDeployment::test().with_module("sensor").stopped();
    let desired = translate(&ed).unwrap();
    assert_eq!(
        deployment(&desired, "sensor").spec.unwrap().replicas,
        Some(0)
    );
    let ed = EdgeDeployment::test()
        .with(ModuleSpec {
            restart_policy: RestartPolicy::OnFailure,
            ..mk_module("batch")
        })
        .stopped();
    assert_eq!(
        job(&translate(&ed).unwrap(), "batch")
            .spec
            .unwrap()
            .parallelism,
        Some(0)
    );
}

#[test]
fn restart_policies_choose_the_workload_and_pod_restart_policy() {
    let ed = EdgeDeployment::test()
        .with(ModuleSpec {
            restart_policy: RestartPolicy::Always,
            ..mk_module("a")
        })
        .with(ModuleSpec {
            restart_policy: RestartPolicy::OnFailure,
            ..mk_module("b")
        })
        .with(ModuleSpec {
            restart_policy: RestartPolicy::OnUnhealthy,
            ..mk_module("c")
        })
        .with(ModuleSpec {
            restart_policy: RestartPolicy::Never,
            ..mk_module("d")
        });
    let desired = translate(&ed).unwrap();
    let pod_policy =
        |spec: Option<k8s_openapi::api::core::v1::PodSpec>| spec.unwrap().restart_policy.unwrap();
    assert_eq!(
        pod_policy(deployment(&desired, "a").spec.unwrap().template.spec),
        "Always"
    );
    let b = job(&desired, "b").spec.unwrap();
    assert_eq!(
        (pod_policy(b.template.spec), b.backoff_limit),
        ("OnFailure".to_string(), Some(20))
    );
    assert_eq!(
        pod_policy(job(&desired, "c").spec.unwrap().template.spec),
        "OnFailure"
    );
    let d = job(&desired, "d").spec.unwrap();
    assert_eq!(
        (pod_policy(d.template.spec), d.backoff_limit),
        ("Never".to_string(), Some(0))
    );
}

#[test]
fn iotedge_variables_are_injected_after_user_env_and_win() {
    let mut module = mk_module("sensor");
    module
        .env
        .insert("IOTEDGE_MODULEID".into(), "spoofed".into());
    module.env.insert("A".into(), "module".into());
    module.generation_id = Some("gen-1".into());
    module.create_options = Some(json!({"Env": ["A=options", "B=options"]}));
    let desired = translate(&EdgeDeployment::test().with(module)).unwrap();
    let env = deployment(&desired, "sensor")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let get = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(get("A").as_deref(), Some("module"));
    assert_eq!(get("B").as_deref(), Some("options"));
    assert_eq!(get("IOTEDGE_MODULEID").as_deref(), Some("sensor"));
    assert_eq!(get("IOTEDGE_MODULEGENERATIONID").as_deref(), Some("gen-1"));
    assert_eq!(get("IOTEDGE_DEVICEID").as_deref(), Some("dev1"));
    assert_eq!(
        get("IOTEDGE_IOTHUBHOSTNAME").as_deref(),
        Some("hub.example.net")
    );
    assert_eq!(get("IOTEDGE_AUTHSCHEME").as_deref(), Some("sasToken"));
    assert_eq!(get("IOTEDGE_GATEWAYHOSTNAME").as_deref(), Some("edgehub"));
    assert_eq!(
        env.iter().filter(|e| e.name == "IOTEDGE_MODULEID").count(),
        1
    );
}

#[test]
fn gateway_host_name_is_the_charts_edge_hub_service_unless_the_spec_names_one() {
    let gateway = |ed: EdgeDeployment| {
        let desired = translate(&ed).unwrap();
        deployment(&desired, "sensor")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .find(|e| e.name == "IOTEDGE_GATEWAYHOSTNAME")
            .and_then(|e| e.value)
    };
    assert_eq!(
        gateway(EdgeDeployment::test().with_module("sensor")).as_deref(),
        Some("edgehub")
    );
    let mut ed = EdgeDeployment::test().with_module("sensor");
    ed.spec.gateway_host_name = Some("gw.example.net".into());
    assert_eq!(gateway(ed).as_deref(), Some("gw.example.net"));
}

#[test]
fn colliding_module_names_are_rejected() {
    let ed = EdgeDeployment::test()
        .with_module("Sensor")
        .with_module("sensor");
    let err = translate(&ed).unwrap_err();
    assert_eq!(err.reason(), "NameCollision");
    assert!(
        err.to_string().contains("\"Sensor\" and \"sensor\""),
        "{err}"
    );
}

#[test]
fn duplicate_modules_empty_images_and_bad_env_names_are_rejected() {
    let ed = EdgeDeployment::test().with_module("a").with_module("a");
    assert_eq!(
        translate(&ed).unwrap_err(),
        SpecError::DuplicateModule { name: "a".into() }
    );
    let ed = EdgeDeployment::test().with(ModuleSpec {
        image: " ".into(),
        ..mk_module("a")
    });
    assert_eq!(translate(&ed).unwrap_err().reason(), "EmptyImage");
    let mut module = mk_module("a");
    module.env.insert("1BAD".into(), "x".into());
    assert_eq!(
        translate(&EdgeDeployment::test().with(module))
            .unwrap_err()
            .reason(),
        "InvalidEnvName"
    );
}

#[test]
fn invalid_create_options_name_the_module_and_path() {
    let module = ModuleSpec {
        create_options: Some(json!({"HostConfig": {"Privileged": "yes"}})),
        ..mk_module("a")
    };
    let err = translate(&EdgeDeployment::test().with(module)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "module \"a\": createOptions.HostConfig.Privileged: expected true or false, found \"yes\""
    );
}

#[test]
fn modules_with_volumes_use_recreate_and_claims_are_retained_by_default() {
    let module = ModuleSpec {
        create_options: Some(json!({"HostConfig": {"Binds": ["data:/data"]}})),
        ..mk_module("db")
    };
    let desired = translate(&EdgeDeployment::test().with(module)).unwrap();
    let strategy = deployment(&desired, "db").spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert_eq!(desired.claims.len(), 1);
    assert!(
        desired.claims[0].metadata.owner_references.is_none(),
        "claims are retained unless asked"
    );
    let plain = translate(&EdgeDeployment::test().with_module("web")).unwrap();
    assert!(deployment(&plain, "web").spec.unwrap().strategy.is_none());
}

#[test]
fn shared_volumes_become_one_claim() {
    let bind = Some(json!({"HostConfig": {"Binds": ["shared:/data"]}}));
    let ed = EdgeDeployment::test()
        .with(ModuleSpec {
            create_options: bind.clone(),
            ..mk_module("a")
        })
        .with(ModuleSpec {
            create_options: bind,
            ..mk_module("b")
        });
    let desired = translate(&ed).unwrap();
    assert_eq!(desired.claims.len(), 1);
    assert_eq!(desired.module("a").unwrap().claims, ["shared"]);
    assert_eq!(desired.module("b").unwrap().claims, ["shared"]);
}

#[test]
fn services_exist_only_for_modules_with_ports() {
    let web = ModuleSpec {
        create_options: Some(json!({"ExposedPorts": {"80/tcp": {}}})),
        ..mk_module("web")
    };
    let desired = translate(&EdgeDeployment::test().with(web).with_module("worker")).unwrap();
    let service = desired
        .module("web")
        .unwrap()
        .service
        .clone()
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(service.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(service.ports.unwrap()[0].port, 80);
    assert!(desired.module("worker").unwrap().service.is_none());
}

#[test]
fn pull_secrets_follow_the_image_registry() {
    let mut ed = EdgeDeployment::test().with_module("a");
    ed.spec.image_pull_secrets = vec![
        ImagePullSecretRef {
            name: "acr".into(),
            registry: "example.azurecr.io".into(),
        },
        ImagePullSecretRef {
            name: "other".into(),
            registry: "quay.io".into(),
        },
    ];
    let pod = deployment(&translate(&ed).unwrap(), "a")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let names: Vec<_> = pod
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["acr"]);
}

#[test]
fn rendering_without_a_uid_has_no_owner_references() {
    let mut ed = EdgeDeployment::test().with_module("a");
    ed.metadata.uid = None;
    let yaml = translate(&ed).unwrap().to_yaml();
    assert!(!yaml.contains("ownerReferences"));
}
