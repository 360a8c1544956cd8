//! Kubernetes Events about the device, attached to its EdgeDeployment (`kubectl describe ed`).
//! Publishing never blocks the caller and never fails it: an Event is a courtesy.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes Events on the device's EdgeDeployment.
#[derive(Clone)]
pub struct Events {
    recorder: Option<Recorder>,
    reference: ObjectReference,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("regarding", &self.reference.name)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events about EdgeDeployment `name` in `namespace`, reported by `instance` (the pod name).
    pub fn new(client: Client, namespace: &str, name: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::labels::MANAGED_BY_VALUE.to_string(),
            instance,
        };
        Self {
            recorder: Some(Recorder::new(client, reporter)),
            reference: ObjectReference {
                api_version: Some("ironedge.io/v1".to_string()),
                kind: Some("EdgeDeployment".to_string()),
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectReference::default()
            },
        }
    }

    /// Events that go nowhere (unit tests).
    pub fn disabled() -> Self {
        Self {
            recorder: None,
            reference: ObjectReference::default(),
        }
    }

    /// A Normal event.
    pub fn normal(&self, reason: &str, action: &str, note: String) {
        self.publish(EventType::Normal, reason, action, note);
    }

    /// A Warning event.
    pub fn warning(&self, reason: &str, action: &str, note: String) {
        self.publish(EventType::Warning, reason, action, note);
    }

    fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        // The Events API limits notes to 1 kB.
        let note = truncate(note, 1000);
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        let reference = self.reference.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, reason = %event.reason, "could not publish an event");
            }
        });
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
