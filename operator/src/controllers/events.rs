//! Events about the objects nestplane reconciles (a HostedCluster today, a NodePool next): one
//! way to write them, one way to publish them.
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use super::Context;

/// An event about an object. The recorder folds events with the same type, reason, action and
/// related object into one series, so each object named gets its own.
pub(crate) fn event(type_: EventType, reason: &str, action: &str) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: None,
        action: action.to_string(),
        secondary: None,
    }
}

pub(crate) trait EventExt {
    fn note(self, note: String) -> Self;
    fn related(self, object: ObjectReference) -> Self;
}

impl EventExt for Event {
    fn note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }
    fn related(mut self, object: ObjectReference) -> Self {
        self.secondary = Some(object);
        self
    }
}

/// The Secret `name` in the namespace of `about`, as an event's related object.
pub(crate) fn secret_reference<K: Resource>(about: &K, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some(name.into()),
        namespace: about.meta().namespace.clone(),
        ..ObjectReference::default()
    }
}

/// Publishes `event` about `about`. Best effort: a lost event must not fail the pass.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, about: &K, event: Event) {
    if let Err(e) = ctx.recorder.publish(&event, &about.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;

    #[test]
    fn a_secret_reference_names_the_secret_beside_the_object() {
        let reference = secret_reference(&hosted_cluster(), "demo-apiserver");
        assert_eq!(reference.kind.as_deref(), Some("Secret"));
        assert_eq!(reference.name.as_deref(), Some("demo-apiserver"));
        assert_eq!(reference.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn note_and_related_fill_the_event() {
        let reference = secret_reference(&hosted_cluster(), "demo-ca");
        let event = event(EventType::Warning, "Broken", "Check")
            .note("the CA is gone".into())
            .related(reference.clone());
        assert_eq!(event.note.as_deref(), Some("the CA is gone"));
        assert_eq!(event.secondary, Some(reference));
        assert_eq!(
            (event.reason.as_str(), event.action.as_str()),
            ("Broken", "Check")
        );
    }
}
