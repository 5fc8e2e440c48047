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

/// The longest note events.k8s.io/v1 accepts, in bytes.
const NOTE_LIMIT: usize = 1024;

/// `"<head>: a, b, c"`, cut at a whole item to fit an event's note, with how many were left
/// out (`"<head>: a, b and 3 more"`).
pub(crate) fn list_note(head: &str, items: &[String]) -> String {
    let mut note = format!("{head}: ");
    for (shown, item) in items.iter().enumerate() {
        let separator = if shown == 0 { "" } else { ", " };
        let left = items.len() - shown;
        // Room for this item, and for the tail that would name the ones after it.
        let tail = if left > 1 {
            format!(" and {} more", left - 1).len()
        } else {
            0
        };
        if note.len() + separator.len() + item.len() + tail > NOTE_LIMIT {
            note.push_str(&format!(" and {left} more"));
            return note;
        }
        note.push_str(separator);
        note.push_str(item);
    }
    note
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
    fn a_list_note_names_every_item_that_fits() {
        let items = vec!["Secret demo-ca".to_string(), "Service demo-apiserver".to_string()];
        assert_eq!(
            list_note("created 2 objects", &items),
            "created 2 objects: Secret demo-ca, Service demo-apiserver"
        );
    }

    #[test]
    fn a_long_list_note_is_cut_at_an_item_and_counts_the_rest() {
        let items: Vec<String> = (0..100)
            .map(|i| format!("Secret cluster-{i:02}-{}", "x".repeat(20)))
            .collect();
        let note = list_note("created 100 objects", &items);
        assert!(note.len() <= NOTE_LIMIT, "{} bytes", note.len());
        let (named, more) = note.rsplit_once(" and ").expect("a tail");
        let more: usize = more.trim_end_matches(" more").parse().expect("a count");
        let shown = named.matches("Secret cluster-").count();
        assert_eq!(shown + more, 100);
        assert!(named.ends_with(&"x".repeat(20)), "cut inside an item: {named}");
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
